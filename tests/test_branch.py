"""Branches (`LoopConfig.branch_from` / `--branch_from`): a new run that starts from another
run's checkpoint with this run's settings, through the library API with the tiny Pendulum
config the recorder tests use.

- a branch with unchanged settings is the source resumed at that step: every metrics row
  equal (the source's rows up to the step copied, the later ones trained identically);
- a branch with another per-member value trains on with it from the step (the rows before
  keep the source's values), and another graph-only setting (the squash term) is taken;
- the source is only read: its files, checkpoints and a save in progress stay untouched;
- a branch that has a checkpoint of its own resumes from it without its source (deleted);
- the temperature: with auto_alpha a learned one is kept, otherwise the given one starts;
- bad branches are refused naming the value (step not held, own directory, another state).
"""

import dataclasses
import json
import os
import shutil

import jax
import numpy as np
import pytest

from cli_util import read_rows
from sac_jax import agent, checkpoint, loop, plotting, recorders, rundir

CFG = agent.SACConfig(num_components=2, hidden_sizes=(16, 16), batch_size=16,
                      buffer_size=1000, start_steps=100)
TIMING = ("sps", "wall_time")  # the only columns two equal runs may differ in


def config(run_dir, total, **kw):
  kw.setdefault("eval_every", 100)
  kw.setdefault("checkpoint_every", 100)
  return loop.LoopConfig("Pendulum-v1", num_members=2, seed=3, total_env_steps=total,
                         eval_episodes=2, run_dir=run_dir, log_every_s=0, **kw)


def train(cfg, lc, hparams=None):
  return loop.train(cfg, lc, hparams, recorders=recorders.defaults(lc))


def untimed(rows):
  return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def listing(run_dir):
  """Every directory and file under `run_dir`, a file with its size and modification
  time."""
  out = {}
  for root, dirs, files in os.walk(run_dir):
    out.update({os.path.relpath(os.path.join(root, d), run_dir): None for d in dirs})
    for f in files:
      st = os.stat(os.path.join(root, f))
      out[os.path.relpath(os.path.join(root, f), run_dir)] = (st.st_size, st.st_mtime_ns)
  return out


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  """200 env steps, evaluations at 100 and 200, checkpoints at 100 and 200."""
  run_dir = str(tmp_path_factory.mktemp("branch") / "source")
  train(CFG, config(run_dir, 200))
  return run_dir


def copy_run(src, dst):
  shutil.copytree(src, dst)
  return dst


def test_an_unchanged_branch_is_the_source_resumed_and_needs_it_only_to_start(
    source, tmp_path, monkeypatch):
  resumed = copy_run(source, str(tmp_path / "resumed"))
  train(CFG, config(resumed, 300))  # the source extended: resumes at 200
  src = copy_run(source, str(tmp_path / "src"))
  # A save of the source in progress (orbax's temporary name): a branch must not clean
  # it up, as the source's own manager would.
  os.makedirs(os.path.join(src, "checkpoints", "300.orbax-checkpoint-tmp-1764000000000000"))
  before = listing(src)
  branch = str(tmp_path / "branch")
  train(CFG, config(branch, 300, branch_from=src, branch_step=200))
  assert listing(src) == before
  got, want = read_rows(branch), read_rows(resumed)
  assert [(r["env_step"], r["member"]) for r in got] == [
      (str(s), str(m)) for s in (100, 200, 300) for m in (0, 1)]
  assert untimed(got) == untimed(want)
  # The copied rows are the source's, timing included.
  assert got[:4] == read_rows(src)
  assert os.listdir(os.path.join(branch, "checkpoints")) == ["300"]  # its own, from 200
  with open(os.path.join(branch, "summary.json")) as f:
    assert json.load(f)["branched_from"] == dict(run_dir=src, env_step=200)
  with open(os.path.join(resumed, "summary.json")) as f:
    assert "branched_from" not in json.load(f)
  # A complete branch's files redrawn (a rerun): the figure still marks the step.
  drawn = []
  monkeypatch.setattr(plotting, "save", lambda fig, out: drawn.append(fig))
  recorders.finalize(CFG, config(branch, 300, branch_from=src, branch_step=200))
  (ax,) = drawn[0].axes
  assert [t.get_text() for t in ax.texts] == ["branched from src at 200"]
  # With a checkpoint of its own the branch resumes from it: its source is not needed.
  shutil.rmtree(src)
  train(CFG, config(branch, 400, branch_from=src, branch_step=200))
  rows = read_rows(branch)
  assert rows[:6] == got and [r["env_step"] for r in rows[6:]] == ["400", "400"]


def test_a_branch_trains_on_with_its_own_settings(source, tmp_path):
  base = str(tmp_path / "same")
  train(CFG, config(base, 200, branch_from=source, branch_step=100))
  other = str(tmp_path / "other")
  hp = agent.Agent(CFG, 3, 1).default_hparams(2)._replace(
      tau=np.array([0.05, 0.01], np.float32))
  train(CFG, config(other, 200, branch_from=source, branch_step=100), hp)
  same, changed = read_rows(base), read_rows(other)
  assert same[:2] == changed[:2] == read_rows(source)[:2]  # the shared history
  assert [float(r["tau"]) for r in changed] == [0.01, 0.01, 0.05, 0.01]
  # Member 0 trained 100 steps with tau 0.05: its value and return differ from the
  # unchanged branch's; member 1 (tau unchanged) is the same.
  for col in ("train_v", "eval_return"):
    assert float(changed[2][col]) != float(same[2][col]), col
    assert changed[3][col] == same[3][col], col
  # (A graph-only setting, the squash term, branched end to end: test_cli.)


def _stored(run_dir, step, cfg):
  """(the replay, the pending transition) of `run_dir`'s checkpoint at `step`, members
  stacked, as numpy."""
  ag = agent.Agent(cfg, 3, 1)
  like = {"train": ag.init_members(loop.seed_keys([3, 4]), ag.default_hparams(2)),
          "pending": agent.empty_transition(2, 3, 1)}
  ckpt = checkpoint.Checkpointer(os.path.join(run_dir, "checkpoints"), read_only=True)
  try:
    tree, _ = ckpt.restore(step, like)
  finally:
    ckpt.close()
  return jax.tree.map(np.asarray, tree["train"].replay)


def _rows(buffer, member):
  """A member's stored transitions as hashable rows (obs, action, reward), oldest first."""
  d, pos, size = buffer.data, int(buffer.insert_pos[member]), int(buffer.size[member])
  cap = d.reward.shape[1]
  order = [((pos if size == cap else 0) + k) % cap for k in range(size)]
  return [tuple(d.obs[member, i]) + tuple(d.action[member, i]) + (d.reward[member, i],)
          for i in order]


def test_a_branch_may_change_the_replay_size_keeping_the_newest_transitions(
    source, tmp_path, capsys):
  """The source (replay 1000) holds 199 transitions at 200; a branch with a replay of 150
  starts with its newest 150 and, 100 steps later, still holds the newest 50 or so of
  them (the oldest overwritten first), full."""
  small = agent.SACConfig(**{**CFG.__dict__, "buffer_size": 150})
  branch = str(tmp_path / "branch")
  lc = config(branch, 300, branch_from=source, branch_step=200)
  train(small, dataclasses.replace(lc, log_every_s=60))
  assert "its replay of 1000 slots moved into 150, the newest transitions kept" in (
      capsys.readouterr().out)
  src, got = _stored(source, 200, CFG), _stored(branch, 300, small)
  assert got.data.reward.shape == (2, 150)
  np.testing.assert_array_equal(got.size, [150, 150])
  for m in (0, 1):
    before, after = _rows(src, m), _rows(got, m)
    assert len(before) == 199
    n = sum(r in set(before) for r in after)  # the source's still held
    assert 49 <= n <= 51, n
    assert after[:n] == before[-n:]  # its newest, oldest first; the older ones overwritten
  assert [r["env_step"] for r in read_rows(branch)] == ["100"] * 2 + ["200"] * 2 + ["300"] * 2


@pytest.mark.parametrize("kw, error, match", [
    (dict(branch_step=150), ValueError,
     r"branch_step=150: .*source has no checkpoint at that env step; it has 100, 200"),
    (dict(branch_step=100, hidden=(8,)), checkpoint.IncompatibleCheckpoint,
     r"cannot branch from .*source at env step 100: .*it holds"),
    (dict(branch_step=100, hidden=(8, 8)), checkpoint.IncompatibleCheckpoint,
     r"cannot branch from .*source at env step 100: .*shape"),
])
def test_bad_branches_are_refused(source, tmp_path, kw, error, match):
  cfg = CFG if "hidden" not in kw else agent.SACConfig(
      **{**CFG.__dict__, "hidden_sizes": kw["hidden"]})
  run_dir = str(tmp_path / "branch")
  before = listing(source)
  with pytest.raises(error, match=match):
    train(cfg, config(run_dir, 300, branch_from=source, branch_step=kw["branch_step"]))
  assert listing(source) == before


@pytest.mark.parametrize("kw, match", [
    (dict(branch_from="x"), "branch_from='x' given without branch_step"),
    (dict(branch_step=100), "branch_step=100 given without branch_from"),
    (dict(branch_from="x", branch_step=300), "total_env_steps=300 is not above branch_step"),
    (dict(branch_from="x", branch_step=0), "branch_step=0: must be >= 1"),
])
def test_a_branch_config_is_checked(tmp_path, kw, match):
  with pytest.raises(ValueError, match=match):
    config(str(tmp_path / "b"), 300, **kw)
  with pytest.raises(ValueError, match="needs a run_dir"):
    config(None, 300, branch_from="x", branch_step=100)
  with pytest.raises(ValueError, match="is this run's own run_dir"):
    config(str(tmp_path / "b"), 300, branch_from=str(tmp_path / "b") + "/",
           branch_step=100)


@pytest.mark.parametrize("auto_alpha", [False, True])
def test_branch_state_takes_the_given_hparams_and_the_temperature_rule(auto_alpha):
  cfg = agent.SACConfig(num_components=2, hidden_sizes=(8,), auto_alpha=auto_alpha)
  ag = agent.Agent(cfg, 3, 1)
  keys = loop.seed_keys([0, 1])
  restored = ag.init_members(keys, ag.default_hparams(2))
  # Member 0's temperature was learned in the source (its Adam state stepped), member 1's
  # was not (a source without auto_alpha: log alpha at its initial value, count 0).
  opt = restored.alpha_opt_state
  restored = restored._replace(
      log_alpha=np.array([-2.0, 0.0], np.float32),
      alpha_opt_state=opt._replace(count=np.array([7, 0], np.int32),
                                   mu=np.array([0.3, 0.0], np.float32)))
  given = ag.init_members(loop.seed_keys([5, 6]),
                          ag.default_hparams(2)._replace(alpha=np.full(2, 0.5, np.float32),
                                                         reg=np.full(2, 0.1, np.float32)))
  out = ag.branch_state(restored, given)
  np.testing.assert_array_equal(out.hparams.alpha, [0.5, 0.5])
  np.testing.assert_array_equal(out.hparams.reg, np.full(2, 0.1, np.float32))
  for a, b in zip(jax.tree.leaves(out.policy_params), jax.tree.leaves(restored.policy_params)):
    np.testing.assert_array_equal(a, b)  # everything else is the source's
  np.testing.assert_array_equal(out.key, restored.key)
  want_log_alpha = [-2.0, np.log(0.5)] if auto_alpha else [np.log(0.5)] * 2
  np.testing.assert_allclose(out.log_alpha, want_log_alpha, rtol=1e-6)
  np.testing.assert_array_equal(out.alpha_opt_state.count, [7, 0] if auto_alpha else [0, 0])
  np.testing.assert_array_equal(out.alpha_opt_state.mu, np.float32([0.3, 0.0]) if auto_alpha
                                else [0, 0])


def test_ddpg_branch_state_takes_the_given_hparams():
  from sac_jax import ddpg
  ag = ddpg.DDPGAgent(ddpg.DDPGConfig(hidden_sizes=(8,), buffer_size=100, batch_size=16),
                      3, 1)
  restored = ag.init_members(loop.seed_keys([0, 1]))
  noise = np.float32([0.3, 0.2])
  given = ag.init_members(loop.seed_keys([5, 6]),
                          ag.default_hparams(2)._replace(expl_noise=noise))
  out = ag.branch_state(restored, given)
  np.testing.assert_array_equal(out.hparams.expl_noise, noise)
  for a, b in zip(jax.tree.leaves(out._replace(hparams=None)),
                  jax.tree.leaves(restored._replace(hparams=None))):
    np.testing.assert_array_equal(a, b)
  # Another replay size: the buffers take the given capacity (replay.fit, test_replay).
  small = ddpg.DDPGAgent(ddpg.DDPGConfig(hidden_sizes=(8,), buffer_size=40, batch_size=16),
                         3, 1)
  out = small.branch_state(restored, small.init_members(loop.seed_keys([5, 6])))
  assert out.replay.data.reward.shape == (2, 40)


def _csv(path, header, rows):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "metrics.csv"), "w") as f:
    f.write(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
  return str(path)


def test_the_rows_a_branch_copies_when_the_training_metrics_differ(tmp_path):
  """The branch records train_a and train_b; sources with another set of train_* columns
  are copied (missing cells empty, extra columns left out and named); any other column
  difference is refused."""
  os.makedirs(tmp_path / "branch")
  ours = rundir.MetricsCSV(str(tmp_path / "branch"), ["env_step", "member", "eval_return",
                                                      "train_a", "train_b", "sps"])
  rows = [(100, 0, 1.5, 7, 8, 9, 2.0), (200, 0, 2.5, 7, 8, 9, 2.0)]
  extra = _csv(tmp_path / "extra", ["env_step", "member", "eval_return", "train_a",
                                    "train_alpha_loss", "train_b", "sps"], rows)
  got, dropped = ours.rows_for_branch(extra, 100)
  assert dropped == ["train_alpha_loss"]
  assert got == [dict(env_step="100", member="0", eval_return="1.5", train_a="7",
                      train_b="9", sps="2.0")]
  ours.write(got)
  assert read_rows(str(tmp_path / "branch")) == [
      dict(env_step="100", member="0", eval_return="1.5", train_a="7", train_b="9",
           sps="2.0")]
  fewer = _csv(tmp_path / "fewer", ["env_step", "member", "eval_return", "train_b", "sps"],
               [r[:3] + r[4:6] for r in rows])
  got, dropped = ours.rows_for_branch(fewer, 200)
  assert dropped == [] and [r.get("train_a") for r in got] == [None, None]
  ours.write(got)
  assert [r["train_a"] for r in read_rows(str(tmp_path / "branch"))] == ["", ""]
  other = _csv(tmp_path / "other", ["env_step", "member", "seed", "eval_return", "train_a",
                                    "train_b", "sps"], rows)
  with pytest.raises(ValueError, match="beyond the training metrics they must be the same"):
    ours.rows_for_branch(other, 100)
  with pytest.raises(ValueError, match="the source run has no metrics.csv"):
    ours.rows_for_branch(str(tmp_path / "none"), 100)
