"""`LoopConfig.overlap`: act, then dispatch the update while the envs step (issue 13, item 3).

With overlap each env step makes two device calls, `Agent.act` (the action from the
current params) and `Agent.store_and_update` (insert, G gradient steps; donated), so the
device updates while the host steps the envs, and the actions lag the synchronous path by
one update. Through the library API, with the tiny Pendulum config of test_recorders.py:

- the lag, deterministically: the action taken at env step t is exactly (bitwise) what
  the synchronous call (`Agent.make_step` with `do_update` False) gives for the state
  after the update of env step t - 1, and not what it gives after the update of t;
- a run resumes from a checkpoint: the LoopState (with its pending transition) and the
  TrainState restore as a unit, and no transition is lost or stored twice;
- members stay independent and divergence freezing still works: a member whose numbers
  overflow is frozen at the same env step as the synchronous path, acts zeros, and the
  other member is bitwise equal to a run where it stayed healthy;
- a short Pendulum run: finite, every evaluation made, the expected update count.
"""

import os
import jax
import numpy as np
import pytest

from sac_jax import agent, loop, recorders

CFG = agent.SACConfig(num_components=2, hidden_sizes=(16, 16), batch_size=16,
                      buffer_size=1000, start_steps=100)


def config(total, run_dir=None, **kw):
  kw.setdefault("eval_every", 100)
  kw.setdefault("checkpoint_every", 100)
  return loop.LoopConfig("Pendulum-v1", num_members=2, seed=3, total_env_steps=total,
                         eval_episodes=2, run_dir=run_dir, log_every_s=0, overlap=True,
                         **kw)


def _host(point):
  return jax.tree.map(lambda x: np.array(x), (point.state, point.loop))


class Trace(recorders.Recorder):
  """Copies (TrainState, LoopState) to numpy after every env step in `steps`; keeps the
  resume point it is offered."""

  def __init__(self, steps=()):
    self.steps, self.at, self.offered = set(steps), {}, None

  def restore(self, like):
    self.offered = _host(like)
    return None

  def after_step(self, loop_state, snapshot):
    if loop_state.env_step in self.steps:
      self.at[loop_state.env_step] = _host(snapshot())


def test_actions_come_from_the_params_one_update_behind():
  # after_step at env step e sees the state after the update of the call at e - 1 and the
  # transition taken at e - 1 (its obs and action).
  first, last = 99, 112  # updates start with the call at env step 100
  trace = Trace(range(first, last + 2))
  loop.train(CFG, config(last + 1, eval_every=1000), recorders=[trace])
  ag = agent.Agent(CFG, 3, 1)
  step_fn = ag.make_step()
  put = lambda tree: jax.tree.map(jax.numpy.asarray, tree)

  def sync_action(state, pending, obs):
    """The synchronous call's action for `state`: pending stored, no update."""
    return np.asarray(step_fn(put(state), put(pending), True, obs, False)[1])

  lagged = same = 0
  for t in range(first + 1, last + 1):
    state_before, loop_before = trace.at[t]      # after the update of t - 1
    state_after, _ = trace.at[t + 1]             # after the update of t
    taken = trace.at[t + 1][1].transition        # obs and action of env step t
    want = sync_action(state_before, loop_before.transition, taken.obs)
    np.testing.assert_array_equal(taken.action, want, err_msg=f"env step {t}")
    # The lag is real: with the params after the update of t (same key), another action.
    other = sync_action(state_after._replace(key=state_before.key),
                        loop_before.transition, taken.obs)
    lagged += not np.array_equal(other, taken.action)
    same += 1
    # The key chain: act splits the state's key, the update's scan (G = 1) splits the
    # first part once more; no key is used twice.
    first_part = jax.vmap(lambda k: jax.random.split(k, 3)[0])
    want_key = first_part(first_part(state_before.key))
    assert np.array_equal(state_after.key, want_key), f"env step {t}"
  assert same == last - first and lagged == same


def test_a_run_resumes_from_a_checkpoint(tmp_path):
  run_dir = str(tmp_path / "run")
  lc = config(150, run_dir)
  first = Trace([150])
  h1 = loop.train(CFG, lc, recorders=[recorders.RunDirectory(
      run_dir, checkpoint_every=100, verbose=False), first])
  lc2 = config(250, run_dir)
  second = Trace([250])
  h2 = loop.train(CFG, lc2, recorders=[recorders.RunDirectory(
      run_dir, checkpoint_every=100, verbose=False), second])
  assert [r.env_step for r in h1] == [100, 150] and [r.env_step for r in h2] == [200, 250]

  # The offered resume point is the snapshot at 150, TrainState and LoopState bitwise.
  saved_state, saved_loop = first.at[150]
  got_state, got_loop = second.offered
  for a, b in zip(jax.tree.leaves((saved_state, saved_loop.transition)),
                  jax.tree.leaves((got_state, got_loop.transition))):
    assert a.tobytes() == b.tobytes()
  assert got_loop._replace(transition=None) == saved_loop._replace(transition=None)
  assert got_loop.env_step == 150 and got_loop.has_transition

  # Every transition but the pending last one stored once, the pending one of the
  # checkpoint included; one update per env step from 100 on.
  state, end = second.at[250]
  assert list(state.env_steps) == [249, 249] and list(state.replay.size) == [249, 249]
  assert list(state.updates) == [150, 150] and list(state.diverged_at) == [-1, -1]
  assert end.has_transition and end.env_step == 250
  assert all(np.isfinite(r.returns).all() for r in h1 + h2)


@pytest.fixture(scope="module")
def diverged():
  """The same two members twice, overlapped: healthy, and with member 1's reward scale at
  3e38 so that its Q target overflows at its first update (the call at env step 100)."""
  out = {}
  for name, scale in (("healthy", 1.0), ("sick", 3e38)):
    hp = agent.HParams.from_config(CFG).stack(2, reward_scale=[1.0, scale])
    trace = Trace([100, 101, 150, 300])
    out[name] = (loop.train(CFG, config(300), hp, recorders=[trace]), trace)
  return out


def test_members_stay_independent(diverged):
  (healthy, _), (sick, _) = diverged["healthy"], diverged["sick"]
  assert [r.env_step for r in healthy] == [r.env_step for r in sick] == [100, 200, 300]
  for a, b in zip(healthy, sick):
    assert a.returns[0].tobytes() == b.returns[0].tobytes()
    for k in a.train_metrics:
      assert a.train_metrics[k][0].tobytes() == b.train_metrics[k][0].tobytes(), k
  h_state, s_state = diverged["healthy"][1].at[300][0], diverged["sick"][1].at[300][0]
  for a, b in zip(jax.tree.leaves(h_state), jax.tree.leaves(s_state)):
    assert a[0].tobytes() == b[0].tobytes()


def test_a_diverged_member_is_frozen_and_acts_zeros(diverged):
  sick, trace = diverged["sick"]
  # Frozen at the call of env step 100, as on the synchronous path (test_recorders).
  assert [list(r.diverged_at) for r in sick] == [[-1, -1], [-1, 100], [-1, 100]]
  assert np.isnan(sick[-1].returns[1]).all() and np.isfinite(sick[-1].returns[0]).all()
  state = trace.at[300][0]
  assert list(state.updates) == [200, 0] and list(state.diverged_at) == [-1, 100]
  for x in jax.tree.leaves((state.policy_params, state.q_params, state.v_params,
                            state.policy_opt_state, state.q_opt_state)):
    assert np.isfinite(x[1]).all()
  # The action at env step 100 came from the params before the freeze; from 101 on, zeros.
  assert np.any(trace.at[101][1].transition.action[1] != 0)
  for e in (150, 300):
    assert not np.any(trace.at[e][1].transition.action[1])
    assert np.any(trace.at[e][1].transition.action[0])


class PlantNaN(recorders.Recorder):
  def restore(self, like):
    q = jax.tree.map(lambda x: x.at[1].set(np.nan), like.state.q_params)
    return like._replace(state=like.state._replace(q_params=q))


def test_nan_params_freeze_a_member_at_once():
  (record,) = loop.train(CFG, config(100), recorders=[PlantNaN()])
  assert list(record.diverged_at) == [-1, 0]  # as the synchronous path: env step 0
  assert np.isnan(record.returns[1]).all() and np.isfinite(record.returns[0]).all()


def test_a_short_pendulum_run_trains_as_usual():
  cfg = agent.SACConfig(num_components=1, hidden_sizes=(32, 32), batch_size=32,
                        buffer_size=3000, start_steps=500,
                        policy_gradient="reparameterized", num_q=2, auto_alpha=True,
                        value_network=False, tau=0.005, reg=0.0)
  trace = Trace([2000])
  history = loop.train(cfg, config(2000, eval_every=500), recorders=[trace])
  assert [r.env_step for r in history] == [500, 1000, 1500, 2000]
  for r in history:
    assert np.isfinite(r.returns).all() and (r.returns > -2000).all()
    assert (r.returns <= 0).all() and list(r.diverged_at) == [-1, -1]
  assert history[0].train_metrics == {}
  for r in history[1:]:
    assert r.train_metrics and all(np.isfinite(v).all() for v in r.train_metrics.values())
  state = trace.at[2000][0]
  assert list(state.updates) == [1500, 1500] and list(state.env_steps) == [1999, 1999]
  for x in jax.tree.leaves(state):
    if np.issubdtype(x.dtype, np.floating):
      assert np.isfinite(x).all()


def test_cli_overlap_flag_and_resume_without_it(tmp_path):
  """--overlap from the command line; a run started with it resumes without it (the flag
  only changes the order of device work, so it is one of run.RESUMABLE)."""
  from cli_util import cli, read_rows
  run = str(tmp_path / "run")
  args = ["--env_id=Pendulum-v1", "--hidden_sizes=16,16", "--batch_size=16",
          "--start_steps=100", "--buffer_size=400", "--eval_every=100", "--eval_episodes=1",
          "--num_seeds=2", "--checkpoint_every=100", "--log_every_s=0", f"--run_dir={run}"]
  first = cli("experiments.run", *args, "--overlap", "--total_env_steps=200")
  assert first.returncode == 0, first.stderr[-3000:]
  assert "--overlap" in open(f"{run}/flags.txt").read().split()
  second = cli("experiments.run", *args, "--total_env_steps=300")
  assert second.returncode == 0, second.stderr[-3000:]
  assert [(int(r["env_step"]), int(r["member"])) for r in read_rows(run)] == [
      (s, m) for s in (100, 200, 300) for m in (0, 1)]
  # The flag reaches the loop's config.
  import subprocess, sys
  code = ("import sys; from absl import flags; import experiments.run as r; "
          "flags.FLAGS(sys.argv); v = r.flag_values(); v['run_dir'] = sys.argv[-1]; "
          "print(r.validate(v)[2].overlap)")
  for flag, expected in (("--overlap", "True"), ("--nooverlap", "False")):
    out = subprocess.run([sys.executable, "-c", code, "--env_id=Pendulum-v1", flag,
                          str(tmp_path / "x")], cwd=os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__))), capture_output=True, text=True)
    assert out.stdout.strip() == expected, out.stderr[-2000:]
