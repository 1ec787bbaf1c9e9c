"""The loop's recorders through the library API (`loop.train(..., recorders=[...])`), with
the tiny Pendulum config the CLI tests use (so the persistent XLA cache serves the compile):

- the protocol: a user recorder sees every event, a Stop without a signal ends training;
- reporting never stops training: a recorder, a plot or a summary that raises is warned
  about once and training goes on, checkpoints included;
- checkpoint hygiene: a killed save's temporary directory is cleaned, a damaged latest
  checkpoint falls back to the one before (metrics.csv cut back to it), a partial last line
  of metrics.csv neither crashes nor survives a resume, the restored TrainState and
  LoopState equal the saved ones bitwise, a resume with other hyperparameters is refused;
- training metrics are empty cells before the first update;
- a member whose numbers stop being finite is frozen and reported without disturbing the
  others (member 0 bitwise equal to a run where member 1 is healthy).
"""

import json
import os
import shutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_util import read_rows
from sac_jax import agent, checkpoint, loop, plotting, recorders, rundir

CFG = agent.SACConfig(num_components=2, hidden_sizes=(16, 16), batch_size=16,
                      buffer_size=1000, start_steps=100)


def config(run_dir, total, **kw):
  kw.setdefault("eval_every", 100)
  kw.setdefault("checkpoint_every", 100)
  return loop.LoopConfig("Pendulum-v1", num_members=2, seed=3, total_env_steps=total,
                         eval_episodes=2, run_dir=run_dir, log_every_s=0, **kw)


def run_dir_recorder(lc):
  return recorders.RunDirectory(lc.run_dir, checkpoint_every=lc.checkpoint_every,
                                verbose=False)


def keys(rows):
  return [(int(r["env_step"]), int(r["member"])) for r in rows]


class Capture(recorders.Recorder):
  """Copies the resume point it is offered and the snapshot at env step `at` to numpy."""

  def __init__(self, at=None):
    self.at, self.offered, self.snap = at, None, None
    self.events = []

  def restore(self, like):
    self.offered = _host(like)
    return None

  def on_eval(self, record):
    self.events.append(("eval", record.env_step))

  def after_step(self, loop_state, snapshot):
    if loop_state.env_step == self.at:
      self.snap = _host(snapshot())

  def close(self, loop_state, complete):
    self.events.append(("close", loop_state.env_step, complete))


def _host(point):
  return jax.tree.map(lambda x: np.array(x), (point.state, point.loop))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """150 env steps, evaluations at 100 and 150, checkpoints at 100 and 150; the snapshot
  taken at 150 (after the checkpoint's save)."""
  run_dir = str(tmp_path_factory.mktemp("lib") / "run")
  lc = config(run_dir, 150)
  cap = Capture(at=150)
  history = loop.train(CFG, lc, recorders=[run_dir_recorder(lc), cap])
  return run_dir, cap, history


def copy_run(finished, tmp_path):
  dst = str(tmp_path / "run")
  shutil.copytree(finished[0], dst)
  return dst


def test_a_user_recorder_sees_every_event(finished):
  run_dir, cap, history = finished
  assert [r.env_step for r in history] == [100, 150]
  assert cap.events == [("eval", 100), ("eval", 150), ("close", 150, True)]
  assert keys(read_rows(run_dir)) == [(s, m) for s in (100, 150) for m in (0, 1)]
  assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["100", "150"]


def test_training_metrics_are_empty_before_the_first_update(finished):
  rows = read_rows(finished[0])
  # Updates start with the call at env step max(start_steps, batch_size) = 100, after the
  # evaluation at 100: that row has no training metric yet (empty, not 0).
  names = [c for c in rows[0] if c.startswith("train_")]
  assert "train_alpha" in names and "train_q_loss" in names
  for r in rows[:2]:
    assert all(r[c] == "" for c in names), r
  for r in rows[2:]:
    assert all(r[c] != "" for c in names), r
    assert float(r["train_alpha"]) == 1.0 and float(r["train_q_loss"]) > 0
  assert finished[2][0].train_metrics == {}


def test_restored_state_equals_the_saved_one_bitwise(finished, tmp_path):
  run_dir = copy_run(finished, tmp_path)
  lc = config(run_dir, 200)
  cap = Capture()
  loop.train(CFG, lc, recorders=[run_dir_recorder(lc), cap])
  saved_state, saved_loop = finished[1].snap
  got_state, got_loop = cap.offered
  assert int(got_loop.env_step) == 150 and got_loop.has_transition
  saved, saved_def = jax.tree_util.tree_flatten_with_path(saved_state)
  got, got_def = jax.tree.flatten(got_state)
  assert got_def == saved_def and len(got) == len(saved) > 20
  for (path, a), b in zip(saved, got):
    assert a.dtype == b.dtype and a.shape == b.shape, jax.tree_util.keystr(path)
    assert a.tobytes() == b.tobytes(), jax.tree_util.keystr(path)
  assert got_loop._replace(transition=None) == saved_loop._replace(transition=None)
  for a, b in zip(saved_loop.transition, got_loop.transition):
    assert a.tobytes() == b.tobytes()


def test_resume_with_other_hparams_is_refused(finished, tmp_path):
  run_dir = copy_run(finished, tmp_path)
  lc = config(run_dir, 200)
  hp = agent.HParams.from_config(CFG).stack(2, reward_scale=[1.0, 5.0])
  with pytest.raises(ValueError, match=r"reward_scale=1 \(member 1\) differs from the "
                                       r"given reward_scale=5"):
    loop.train(CFG, lc, hp, recorders=[run_dir_recorder(lc)])
  # Nothing was trained: the rows up to the checkpoint are all there.
  assert keys(read_rows(run_dir)) == keys(read_rows(finished[0]))


def test_keep_every_keeps_the_multiples_beside_the_newest(finished, tmp_path):
  """max_to_keep=1, keep_every=200: the newest checkpoint and every multiple of 200 stay
  (the states a later branch can start from); the others go."""
  run_dir = copy_run(finished, tmp_path)  # checkpoints 100 and 150
  lc = config(run_dir, 500, max_to_keep=1, keep_every=200)
  loop.train(CFG, lc, recorders=recorders.defaults(lc))
  assert sorted(map(int, os.listdir(os.path.join(run_dir, "checkpoints")))) == [
      200, 400, 500]


def test_resume_with_other_shapes_is_refused_and_moves_nothing_aside(finished, tmp_path):
  """Another replay capacity: the checkpoint is readable, only not this run's shapes; it
  is refused naming the array, not set aside as damaged."""
  run_dir = copy_run(finished, tmp_path)
  lc = config(run_dir, 200)
  cfg = agent.SACConfig(**{**CFG.__dict__, "buffer_size": 500})
  with pytest.raises(checkpoint.IncompatibleCheckpoint,
                     match=r"holds arrays of other shapes than this run's \(.*\(2, 1000, "
                           r"3\) stored, \(2, 500, 3\) here"):
    loop.train(cfg, lc, recorders=[run_dir_recorder(lc)])
  assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["100", "150"]
  assert not os.path.exists(os.path.join(run_dir, "checkpoints.corrupt"))


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(finished, tmp_path):
  run_dir = copy_run(finished, tmp_path)
  latest = os.path.join(run_dir, "checkpoints", "150")
  damaged = []
  for root, _, files in os.walk(os.path.join(latest, "tree")):
    for f in files:
      path = os.path.join(root, f)
      if os.path.getsize(path) > 64:
        with open(path, "r+b") as fh:  # truncated to half, as a copy cut short
          fh.truncate(os.path.getsize(path) // 2)
        damaged.append(path)
  assert damaged
  lc = config(run_dir, 200)
  cap = Capture()
  with pytest.warns(checkpoint.CheckpointWarning, match="checkpoints/150 cannot be restored"):
    loop.train(CFG, lc, recorders=[run_dir_recorder(lc), cap])
  assert int(cap.offered[1].env_step) == 100
  # metrics.csv was cut back to 100 and goes on from there: 150's rows are gone.
  assert keys(read_rows(run_dir)) == [(s, m) for s in (100, 200) for m in (0, 1)]
  assert read_rows(run_dir)[:2] == read_rows(finished[0])[:2]
  assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["100", "200"]
  assert os.listdir(os.path.join(run_dir, "checkpoints.corrupt")) == ["150"]


def test_a_partial_last_line_of_metrics_csv_neither_crashes_nor_survives(finished,
                                                                          tmp_path):
  run_dir = copy_run(finished, tmp_path)
  path = os.path.join(run_dir, "metrics.csv")
  with open(path, "a") as f:
    f.write("2")  # a kill after the first byte of an append ("2" of "200,0,...")
  csv_file = rundir.MetricsCSV(run_dir, list(read_rows(finished[0])[0]))
  assert keys(csv_file.read()) == keys(read_rows(finished[0]))
  lc = config(run_dir, 200)
  loop.train(CFG, lc, recorders=[run_dir_recorder(lc)])
  text = open(path).read()
  assert text.endswith("\n") and "\n2\n" not in text and "\n2," not in text
  assert keys(read_rows(run_dir)) == [(s, m) for s in (100, 150, 200) for m in (0, 1)]


def _rewrite_csv(path, keep):
  """metrics.csv with only the columns `keep` says yes to (as an older version wrote it)."""
  import csv
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  cols = [i for i, c in enumerate(rows[0]) if keep(c)]
  with open(path, "w", newline="") as f:
    csv.writer(f, lineterminator="\n").writerows([[r[i] for i in cols] for r in rows])


def test_a_run_from_before_a_training_metric_was_added_resumes(finished, tmp_path):
  """A metrics.csv without training metrics added since (train_abs_u, train_log_std) is
  kept on resume: its rows get empty cells there, new rows have them."""
  run_dir = copy_run(finished, tmp_path)
  path = os.path.join(run_dir, "metrics.csv")
  new_cols = ("train_abs_u", "train_log_std")
  _rewrite_csv(path, lambda c: c not in new_cols)
  lc = config(run_dir, 200)
  loop.train(CFG, lc, recorders=[run_dir_recorder(lc)])
  rows = read_rows(run_dir)
  assert list(rows[0]) == list(read_rows(finished[0])[0])
  assert keys(rows) == [(s, m) for s in (100, 150, 200) for m in (0, 1)]
  old = read_rows(finished[0])
  for got, was in zip(rows[:4], old):
    assert got == {**was, **{c: "" for c in new_cols}}
  for r in rows[4:]:
    assert float(r["train_abs_u"]) > 0 and r["train_log_std"] != ""


@pytest.mark.parametrize("change", ["drops a non-training column", "adds a column",
                                    "reorders columns"])
def test_a_metrics_csv_of_other_columns_is_refused_on_resume(tmp_path, change):
  columns = ["env_step", "member", "eval_return", "train_q", "train_abs_u", "sps"]
  found = {"drops a non-training column": ["env_step", "member", "train_q", "sps"],
           "adds a column": ["env_step", "member", "eval_return", "train_q", "extra", "sps"],
           "reorders columns": ["env_step", "member", "train_q", "eval_return", "sps"]}[change]
  with open(tmp_path / "metrics.csv", "w") as f:
    f.write(",".join(found) + "\n" + ",".join("1" for _ in found) + "\n")
  older = rundir.MetricsCSV(str(tmp_path), columns)
  with pytest.raises(ValueError, match="has columns"):
    older.reset_to(10)
  # The same file lacking only training metrics is accepted, and rewritten in full.
  with open(tmp_path / "metrics.csv", "w") as f:
    f.write("env_step,member,eval_return,sps\n5,0,2.5,9\n20,0,3,9\n")
  assert older.reset_to(10) == 1
  assert open(tmp_path / "metrics.csv").read() == (
      "env_step,member,eval_return,train_q,train_abs_u,sps\n5,0,2.5,,,9\n")


def test_a_killed_saves_temporary_directory_is_cleaned(finished, tmp_path):
  run_dir = copy_run(finished, tmp_path)
  ckdir = os.path.join(run_dir, "checkpoints")
  # What a kill during orbax's save of step 200 leaves: the whole checkpoint under a
  # temporary name (orbax's own naming: <step>.orbax-checkpoint-tmp-<timestamp>).
  tmp = os.path.join(ckdir, "200.orbax-checkpoint-tmp-1764000000000000")
  shutil.copytree(os.path.join(ckdir, "150"), tmp)
  ck = checkpoint.Checkpointer(ckdir)
  try:
    assert ck.latest_step() == 150
    assert sorted(os.listdir(ckdir)) == ["100", "150"]
  finally:
    ck.close()


class Raising(recorders.Recorder):
  def on_eval(self, record):
    raise RuntimeError("on_eval broke")

  def after_step(self, loop_state, snapshot):
    raise KeyError("after_step broke")

  def close(self, loop_state, complete):
    raise OSError("close broke")


def test_a_recorder_or_a_report_that_raises_never_stops_training(tmp_path, monkeypatch):
  def no_space(*args, **kwargs):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(plotting, "plot_curves", no_space)
  monkeypatch.setattr(rundir, "write_json", no_space)
  run_dir = str(tmp_path / "run")
  lc = config(run_dir, 200)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    history = loop.train(CFG, lc, recorders=[Raising(), run_dir_recorder(lc)])
  assert [r.env_step for r in history] == [100, 200]
  # Training and the checkpoints went on; the reports did not.
  assert keys(read_rows(run_dir)) == [(s, m) for s in (100, 200) for m in (0, 1)]
  assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["100", "200"]
  assert not os.path.exists(os.path.join(run_dir, "curves.png"))
  msgs = [str(w.message) for w in caught
          if issubclass(w.category, (loop.RecorderWarning, recorders.ReportingWarning))]
  # Once per recorder method / report kind, though each failed several times.
  assert sorted(m.split(" ")[1] if m.startswith("recorder") else m.split(" ")[3]
                for m in msgs) == ["Raising.after_step", "Raising.close", "Raising.on_eval",
                                   "curves.png", "summary.json"], msgs


class StopAt(recorders.Recorder):
  def after_step(self, loop_state, snapshot):
    return loop.Stop(reason="enough") if loop_state.env_step == 120 else None


def test_a_stop_without_a_signal_ends_training_and_returns():
  lc = config(None, 300)
  history = loop.train(CFG, lc, recorders=[StopAt()])
  assert [r.env_step for r in history] == [100]


# ---------------------------------------------------------------- divergence
class PlantNaN(recorders.Recorder):
  """Member `member`'s Q params become NaN before training (None: left healthy)."""

  def __init__(self, member):
    self.member = member

  def restore(self, like):
    if self.member is None:
      return None
    q = jax.tree.map(lambda x: x.at[self.member].set(jnp.nan), like.state.q_params)
    return like._replace(state=like.state._replace(q_params=q))


def _strict_json(path):
  def refuse(name):
    raise ValueError(f"non-strict JSON constant {name}")
  return json.loads(open(path).read(), parse_constant=refuse)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
  """The same two members twice: healthy, and with member 1's reward scale at 3e38, so
  its Q target overflows float32 at its first update (the call at env step 100)."""
  base = tmp_path_factory.mktemp("div")
  out = {}
  for name, scale in (("healthy", 1.0), ("sick", 3e38)):
    lc = config(str(base / name), 300)
    hp = agent.HParams.from_config(CFG).stack(2, reward_scale=[1.0, scale])
    cap = Capture(at=300)
    out[name] = (lc.run_dir, loop.train(CFG, lc, hp, recorders=[
        run_dir_recorder(lc), recorders.Progress("t", every_s=0), cap]))
    out[name + "_state"] = cap.snap[0]
  return out


def test_a_diverged_member_never_disturbs_the_others(diverged):
  (healthy_dir, healthy), (sick_dir, sick) = diverged["healthy"], diverged["sick"]
  # Member 0: every row bitwise equal to the run where member 1 stayed healthy (the same
  # program, the same seeds); only the timing columns differ.
  timing = ("sps", "wall_time")
  rows_h = [{k: v for k, v in r.items() if k not in timing}
            for r in read_rows(healthy_dir) if r["member"] == "0"]
  rows_s = [{k: v for k, v in r.items() if k not in timing}
            for r in read_rows(sick_dir) if r["member"] == "0"]
  assert rows_h == rows_s and len(rows_h) == 3
  for a, b in zip(healthy, sick):
    assert a.returns[0].tobytes() == b.returns[0].tobytes()
    for k in a.train_metrics:
      assert a.train_metrics[k][0].tobytes() == b.train_metrics[k][0].tobytes(), k


def test_a_diverged_member_is_frozen_marked_and_reported(diverged):
  sick_dir, sick = diverged["sick"]
  rows = [r for r in read_rows(sick_dir) if r["member"] == "1"]
  # Its first update (the call at env step 100) met the NaN: frozen there. The evaluation
  # at 100 came before it.
  assert rows[0]["eval_return"] != "" and rows[0]["diverged_at_step"] == ""
  for r in rows[1:]:
    assert r["diverged_at_step"] == "100"
    assert r["eval_return"] == "" and r["train_q_loss"] == ""
  assert [list(r.diverged_at) for r in sick] == [[-1, -1], [-1, 100], [-1, 100]]
  assert np.isnan(sick[-1].returns[1]).all() and np.isfinite(sick[-1].returns[0]).all()
  # Frozen before its first gradient step: its params and optimizer states kept their
  # (finite) values, while member 0 took all 200 steps.
  state = diverged["sick_state"]
  assert list(state.updates) == [200, 0] and list(state.diverged_at) == [-1, 100]
  for x in jax.tree.leaves((state.policy_params, state.q_params, state.v_params,
                            state.policy_opt_state, state.q_opt_state)):
    assert np.isfinite(x[1]).all()

  s = _strict_json(os.path.join(sick_dir, "summary.json"))
  assert s["complete"] and s["num_diverged"] == 1
  assert s["diverged"] == [dict(member=1, seed=4, diverged_at_step=100)]
  m1 = s["members"][1]
  assert m1["final_return"] is None and m1["diverged_at_step"] == 100
  assert s["final_return_members"] == 1
  last0 = [r for r in read_rows(sick_dir) if r["member"] == "0"][-1]
  assert s["final_return_mean"] == float(last0["eval_return"])
  assert os.path.getsize(os.path.join(sick_dir, "curves.png")) > 10_000


def test_nan_params_freeze_a_member_at_once(capsys):
  history = loop.train(CFG, config(None, 100), recorders=[
      recorders.Progress("t", every_s=0), PlantNaN(1)])
  (record,) = history
  assert list(record.diverged_at) == [-1, 0]  # caught at the first call, env step 0
  assert np.isnan(record.returns[1]).all() and np.isfinite(record.returns[0]).all()
  err = capsys.readouterr().err
  assert err.count("member 1 diverged at env step 0") == 1, err


def test_a_mean_stops_where_a_member_has_no_return():
  mat = np.array([[-10.0, -8.0, -6.0], [-12.0, np.nan, np.nan]])
  mean, lo, hi = plotting._band(mat)
  assert mean[0] == -11.0 and np.isnan(mean[1:]).all() and np.isnan(lo[1:]).all()
  assert plotting._stop_index(mean) == 0 and plotting._stop_index(mat[0]) is None


def test_settings_with_a_diverged_member_rank_last():
  per_member = [
      dict(member=0, seed=0, setting="a", final_return=-100.0, best_return=-90.0,
           diverged_at_step=None),
      dict(member=1, seed=0, setting="b", final_return=None, best_return=-5.0,
           diverged_at_step=300),
      dict(member=2, seed=0, setting="c", final_return=-500.0, best_return=-400.0,
           diverged_at_step=None),
      dict(member=3, seed=1, setting="b", final_return=-10.0, best_return=-5.0,
           diverged_at_step=None)]
  ranked = recorders.rank_settings(per_member)
  # b's healthy seed has the best final return, but one of b's seeds diverged: last.
  assert [e["setting"] for e in ranked] == ["a", "c", "b"]
  assert ranked[2]["num_diverged"] == 1 and ranked[2]["diverged_members"] == [1]
  assert ranked[2]["final_return_mean"] == -10.0 and ranked[2]["members"] == [1, 3]


def test_summary_json_is_strict(tmp_path):
  path = str(tmp_path / "s.json")
  rundir.write_json(path, dict(a=float("nan"), b=[1.0, float("inf")], c=np.float32(2.5)))
  assert _strict_json(path) == dict(a=None, b=[1.0, None], c=2.5)


def test_curves_are_redrawn_at_most_every_plot_every_s_and_at_checkpoints_and_the_end(
    tmp_path, monkeypatch):
  """curves.png costs a re-read of metrics.csv and a matplotlib draw: drawn at the first
  evaluation, then no more often than `plot_every_s` (here never by time), at every
  checkpoint (so a stopped run's figure matches its files) and at the end, each time with
  every evaluation so far."""
  drawn = []
  real = plotting.plot_curves

  def spy(csv_path, *args, **kwargs):
    drawn.append(max(keys(read_rows(os.path.dirname(csv_path))))[0])
    return real(csv_path, *args, **kwargs)

  monkeypatch.setattr(plotting, "plot_curves", spy)
  run_dir = str(tmp_path / "run")
  lc = config(run_dir, 500, eval_every=50, checkpoint_every=200)
  rec = recorders.RunDirectory(run_dir, checkpoint_every=200, verbose=False,
                               plot_every_s=1e9)
  loop.train(CFG, lc, recorders=[rec])
  # Evaluations at 50, 100, ..., 500; checkpoints at 200, 400 and 500 (the end).
  assert drawn == [50, 200, 400, 500]
  assert os.path.getsize(os.path.join(run_dir, "curves.png")) > 10_000
  # With plot_every_s=0 every evaluation is drawn (today's behaviour, when asked for).
  drawn.clear()
  run_dir2 = str(tmp_path / "run2")
  lc2 = config(run_dir2, 200, eval_every=50, checkpoint_every=0)
  loop.train(CFG, lc2, recorders=[recorders.RunDirectory(run_dir2, verbose=False,
                                                         plot_every_s=0.0)])
  assert drawn == [50, 100, 150, 200]
