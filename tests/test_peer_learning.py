"""experiments.peer_learning with fake models (no sbx needed): metrics.csv, the evaluation
protocol, resume at seed granularity, and bad input."""

import csv
import dataclasses
import json
import os
import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from experiments import claim_analysis
from experiments import peer_learning as P
from sac_jax import envs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = "Pendulum-v1"   # 200-step episodes, 1-d actions: cheap
CFG = P.PeerConfig(env_id=ENV, seed=100, num_seeds=2, total_env_steps=25, eval_every=10,
                   eval_episodes=3, learning_starts=0, peer="random")


class FakeModel:
  """Records what train() asks of a model; acts zeros; may fail at its k-th learn call."""

  def __init__(self, seed, fail_at=None):
    self.seed, self.fail_at = seed, fail_at
    self.learned, self.predicts = [], []

  def learn(self, total_timesteps, reset_num_timesteps=True):
    if len(self.learned) == self.fail_at:
      raise RuntimeError("killed")
    self.learned.append((total_timesteps, reset_num_timesteps))
    return self

  def predict(self, observation, deterministic=False):
    self.predicts.append((np.array(observation), deterministic))
    return np.zeros((*np.shape(observation)[:-1], 1), np.float32), None


def _factory(models, fail=None):
  def make(seed):
    models[seed] = FakeModel(seed, (fail or {}).get(seed))
    return models[seed]
  return make


def _rows(run_dir):
  with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
    return list(csv.DictReader(f))


def test_rows_and_the_evaluation_protocol(tmp_path):
  models = {}
  trained = P.train(P.Peer(_factory(models)), CFG, str(tmp_path), log=lambda m: None)
  assert trained == [100, 101] and sorted(models) == [100, 101]
  rows = _rows(tmp_path)
  # One row per seed and evaluation: every 10 steps and at the end (25 is no multiple).
  assert [(int(r["seed"]), int(r["member"]), int(r["env_step"])) for r in rows] == [
      (s, s - 100, t) for s in (100, 101) for t in (10, 20, 25)]
  assert set(P.COLUMNS) <= set(rows[0]) and {"env_step", "member", "seed", "eval_return",
                                             "eval_return_std", "eval_return_min",
                                             "eval_return_max", "eval_episodes",
                                             "wall_time"} <= set(rows[0])
  assert all(int(r["eval_episodes"]) == 3 for r in rows)
  # reproduce reads it as it reads an experiments.run metrics.csv.
  steps, curves = claim_analysis.read_arm(str(tmp_path))
  assert steps.tolist() == [10, 20, 25] and sorted(curves) == [100, 101]
  for s, m in models.items():
    # Training continues between evaluations (never restarts the model's counter).
    assert m.learned == [(10, False), (10, False), (5, False)]
    # Deterministic actions only, for all 3 episodes at once, 200 steps per evaluation.
    assert all(det is True for _, det in m.predicts)
    assert all(o.shape == (3, 3) for o, _ in m.predicts)
    assert len(m.predicts) == 3 * 200
    # Fresh evaluation envs seeded as sac_jax seeds its own: episode j of evaluation c of
    # seed s starts from reset(seed=eval_seed(s, c, j)).
    ref = gym.make(ENV)
    for c in range(3):
      first = m.predicts[c * 200][0]
      want = [ref.reset(seed=envs.eval_seed(s, c, j))[0] for j in range(3)]
      np.testing.assert_allclose(first, want, rtol=1e-6)
    # Zero torque from the same starts: the returns equal a plain rollout's (float32 obs).
    r = [float(x["eval_return"]) for x in rows if int(x["seed"]) == s]
    ret = []
    for j in range(3):
      ref.reset(seed=envs.eval_seed(s, 0, j))
      ret.append(sum(ref.step(np.zeros(1, np.float32))[1] for _ in range(200)))
    assert r[0] == pytest.approx(np.mean(ret), rel=1e-6)


def test_resume_skips_complete_seeds_and_resumes_an_incomplete_one(tmp_path):
  cfg = dataclasses.replace(CFG, num_seeds=3)
  models = {}
  # Seed 101 is killed during its third chunk of training: 2 of its 3 rows are written,
  # and its checkpoint after the second evaluation.
  with pytest.raises(RuntimeError, match="killed"):
    P.train(P.Peer(_factory(models, fail={101: 2})), cfg, str(tmp_path), log=lambda m: None)
  first = _rows(tmp_path)
  assert [(int(r["seed"]), int(r["env_step"])) for r in first] == [
      (100, 10), (100, 20), (100, 25), (101, 10), (101, 20)]
  assert P.complete_seeds(first, cfg) == {100}
  assert not os.path.exists(P.checkpoint_path(str(tmp_path), 100))  # complete: removed
  assert os.path.exists(P.checkpoint_path(str(tmp_path), 101))
  models, loaded, logs = {}, [], []

  def load(state, seed, env_step):
    m = pickle.loads(state)
    m.fail_at = None
    loaded.append((seed, env_step, list(m.learned)))
    return m
  peer = P.Peer(_factory(models), load=load)
  assert P.train(peer, cfg, str(tmp_path), log=logs.append) == [101, 102]
  # Seed 100 is not trained again; 101 is restored (its two chunks of training kept), not
  # made afresh; 102 starts from scratch.
  assert sorted(models) == [102]
  assert loaded == [(101, 20, [(10, False), (10, False)])]
  assert any("seed 101 resumes from its checkpoint at env step 20" in m for m in logs)
  rows = _rows(tmp_path)
  assert rows[:5] == first              # the rows before the kill as they were
  assert [(int(r["seed"]), int(r["env_step"])) for r in rows[5:]] == [
      (101, 25), (102, 10), (102, 20), (102, 25)]
  assert float(rows[4]["wall_time"]) <= float(rows[5]["wall_time"])  # the clock continues
  assert not os.listdir(tmp_path / "checkpoints")   # every seed complete: none kept
  # Everything complete: nothing trains.
  assert P.train(P.Peer(_factory({})), cfg, str(tmp_path), log=lambda m: None) == []
  assert _rows(tmp_path) == rows


class FlakyRandom(P.RandomPeer):
  """The random peer, killed at its fail_at-th learn call."""

  def __init__(self, act_dim, seed, fail_at=None):
    super().__init__(act_dim, seed)
    self.fail_at, self.calls = fail_at, 0

  def learn(self, total_timesteps, reset_num_timesteps=True):
    self.calls += 1
    if self.calls == self.fail_at:
      raise RuntimeError("killed")
    return self


def _flaky_peer(fail):
  def load(state, seed, env_step):
    m = pickle.loads(state)
    m.fail_at = None
    return m
  return P.Peer(lambda seed: FlakyRandom(1, seed, fail.get(seed)), load=load)


def _returns(run_dir):
  return [(int(r["seed"]), int(r["env_step"]), float(r["eval_return"]))
          for r in _rows(run_dir)]


@pytest.mark.parametrize("kill", ["in_learn", "between_row_and_checkpoint",
                                  "corrupt_checkpoint", "checkpoint_does_not_load"])
def test_a_killed_seed_resumes_to_the_uninterrupted_curve(tmp_path, monkeypatch, kill):
  """The random peer draws its actions from its RNG (in the checkpoint) on evaluation envs
  whose start states follow the evaluation counter (restored): a run killed and resumed
  writes exactly the returns of one never killed, wherever the kill lands."""
  cfg = dataclasses.replace(CFG, num_seeds=2, total_env_steps=35, eval_episodes=2)
  ref = tmp_path / "ref"
  P.train(_flaky_peer({}), cfg, str(ref), log=lambda m: None)
  run = tmp_path / "run"
  if kill == "between_row_and_checkpoint":
    # The third evaluation's row is written, its checkpoint is not.
    real, calls = P.write_checkpoint, []

    def dies(run_dir, seed, ckpt):
      calls.append(seed)
      if seed == 101 and calls.count(101) == 3:
        raise RuntimeError("killed")
      real(run_dir, seed, ckpt)
    monkeypatch.setattr(P, "write_checkpoint", dies)
    with pytest.raises(RuntimeError, match="killed"):
      P.train(_flaky_peer({}), cfg, str(run), log=lambda m: None)
    monkeypatch.setattr(P, "write_checkpoint", real)
    assert [t for s, t, _ in _returns(run) if s == 101] == [10, 20, 30]
    want_log = "seed 101 resumes from its checkpoint at env step 20"
  else:
    with pytest.raises(RuntimeError, match="killed"):
      P.train(_flaky_peer({101: 3}), cfg, str(run), log=lambda m: None)
    assert [t for s, t, _ in _returns(run) if s == 101] == [10, 20]
    want_log = "seed 101 resumes from its checkpoint at env step 20"
    if kill == "corrupt_checkpoint":
      path = P.checkpoint_path(str(run), 101)
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
      want_log = "seed 101 is incomplete and has no usable checkpoint"
  peer = _flaky_peer({})
  if kill == "checkpoint_does_not_load":   # e.g. written by another version of the peer
    def load(state, seed, env_step):
      raise ValueError("not this version's format")
    peer = peer._replace(load=load)
    want_log = "seed 101: its checkpoint does not load (ValueError"
  logs = []
  assert P.train(peer, cfg, str(run), log=logs.append) == [101]
  assert any(want_log in m for m in logs), logs
  assert _returns(run) == _returns(ref)
  assert not os.listdir(run / "checkpoints")


def test_a_checkpoint_that_does_not_fit_the_rows_is_not_used(tmp_path):
  cfg = dataclasses.replace(CFG, num_seeds=1)
  with pytest.raises(RuntimeError, match="killed"):
    P.train(_flaky_peer({100: 3}), cfg, str(tmp_path), log=lambda m: None)
  ckpt = P.read_checkpoint(str(tmp_path), 100, cfg, [10, 20])
  assert ckpt is not None and ckpt["env_step"] == 20 and ckpt["evals"] == 2
  # Rows missing before the checkpoint's step, another seed's file, a step off the grid.
  assert P.read_checkpoint(str(tmp_path), 100, cfg, [10]) is None
  assert P.read_checkpoint(str(tmp_path), 100, cfg, [20, 10]) is None
  assert P.read_checkpoint(str(tmp_path), 100, dataclasses.replace(cfg, eval_every=7),
                           [7, 14]) is None
  os.replace(P.checkpoint_path(str(tmp_path), 100), P.checkpoint_path(str(tmp_path), 101))
  assert P.read_checkpoint(str(tmp_path), 101, dataclasses.replace(cfg, seed=101),
                           [10, 20]) is None


def test_learning_starts_defaults_to_our_start_steps():
  assert P.our_start_steps() == 1000
  assert P.flagfile_value(["experiments/flags/modern.flags"], "batch_size") == "256"
  assert P.flagfile_value(["experiments/flags/hopper.flags"], "start_steps") == "1000"
  cfg = dataclasses.replace(CFG, learning_starts=1000, total_env_steps=100_000)
  kw = P.sbx_kwargs(cfg)
  assert kw["learning_starts"] == 1000 and kw["buffer_size"] == 100_000
  assert kw["batch_size"] == 256 and kw["tau"] == 0.005 and kw["ent_coef"] == "auto"


@pytest.mark.parametrize("change, named", [
    (dict(env_id="Hoper-v5"), "Hoper-v5"),
    (dict(total_env_steps=0), "--total_env_steps=0"),
    (dict(num_seeds=-1), "--num_seeds=-1"),
    (dict(eval_every=0), "--eval_every=0"),
    (dict(eval_episodes=0), "--eval_episodes=0"),
    (dict(seed=-3), "--seed=-3"),
    (dict(learning_starts=-1), "--learning_starts=-1"),
    (dict(learning_starts=100), "--learning_starts=100"),   # above total_env_steps=25
    (dict(peer="sbx"), "--total_env_steps=25"),              # below a batch of 256
])
def test_bad_input_names_the_bad_value(tmp_path, change, named):
  refusal = P.validate(dataclasses.replace(CFG, **change), str(tmp_path))
  assert refusal and named in refusal, refusal


def test_missing_sbx_and_other_settings_in_the_run_dir(tmp_path, monkeypatch):
  cfg = dataclasses.replace(CFG, peer="sbx", total_env_steps=1000)
  monkeypatch.setattr(P, "_sbx_installed", lambda: False)
  assert P.INSTALL in P.validate(cfg, str(tmp_path))
  assert P.validate(CFG, str(tmp_path)) is None
  (tmp_path / "run.json").write_text(json.dumps(dict(
      settings=dataclasses.asdict(dataclasses.replace(CFG, total_env_steps=30)))))
  refusal = P.validate(CFG, str(tmp_path))
  assert "total_env_steps: 30 there, 25 here" in refusal, refusal


def test_command_line_with_the_random_peer(tmp_path):
  """The entry point end to end (uniform-random policy), its rerun, and one bad flag."""
  def cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments.peer_learning", *args],
                          cwd=REPO, capture_output=True, text=True)
  args = [f"--env_id={ENV}", "--peer=random", "--seed=7", "--num_seeds=2",
          "--total_env_steps=20", "--eval_every=10", "--eval_episodes=1",
          "--learning_starts=0", f"--run_dir={tmp_path}"]
  res = cli(*args)
  assert res.returncode == 0, res.stderr[-2000:]
  assert len(_rows(tmp_path)) == 4
  info = json.loads((tmp_path / "run.json").read_text())
  assert info["peer"] == "random" and info["settings"]["seed"] == 7
  again = cli(*args)
  assert again.returncode == 0 and "is complete" in again.stdout, again.stdout
  bad = cli(*args[:-1], "--eval_every=-5", f"--run_dir={tmp_path}/b")
  assert bad.returncode == 2 and "error: --eval_every=-5" in bad.stderr
  assert "Traceback" not in bad.stderr
