"""sac_jax.envs: action rescaling, termination vs truncation (the true final observation
under gymnasium 1.x SAME_STEP autoreset), seeding, env-id checks.

Also defines two tiny test envs, importable by subprocesses as
`tests.test_envs:SacJaxTest/DictObs-v0` (gymnasium's "module:EnvId" form), which the CLI
tests use for the non-Box observation error.
"""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from sac_jax import envs


class CounterEnv(gym.Env):
  """obs = [t, applied action 0, applied action 1, a seeded random number];
  asymmetric action bounds; terminates when action 0 is at its upper bound (1.0)."""

  def __init__(self):
    self.action_space = gym.spaces.Box(np.array([0.0, -3.0], np.float32),
                                       np.array([1.0, 5.0], np.float32))
    self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    self.t = 0

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self.t = 0
    self.noise = float(self.np_random.uniform())
    return np.array([0.0, 0.0, 0.0, self.noise], np.float32), {}

  def step(self, action):
    self.t += 1
    a = np.asarray(action, np.float64)
    obs = np.array([self.t, a[0], a[1], self.noise], np.float32)
    return obs, 1.0, bool(a[0] >= 1.0 - 1e-6), False, {}


class DictObsEnv(gym.Env):
  def __init__(self):
    self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    self.observation_space = gym.spaces.Dict(
        {"x": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)})

  def reset(self, *, seed=None, options=None):
    return {"x": np.zeros(2, np.float32)}, {}

  def step(self, action):
    return {"x": np.zeros(2, np.float32)}, 0.0, False, False, {}


COUNTER = "SacJaxTest/Counter-v0"
DICT_OBS = "SacJaxTest/DictObs-v0"
SHORT_PENDULUM = "SacJaxTest/ShortPendulum-v0"
for _id, _entry, _steps in [
    (COUNTER, CounterEnv, 5), (DICT_OBS, DictObsEnv, 5),
    (SHORT_PENDULUM, "gymnasium.envs.classic_control.pendulum:PendulumEnv", 5)]:
  if _id not in gym.registry:
    gym.register(id=_id, entry_point=_entry, max_episode_steps=_steps)


def test_actions_are_rescaled_from_unit_box_to_env_bounds():
  e = envs.TrainEnvs(COUNTER, 1, seed=0)
  e.reset()
  # [-1, 1] -> [low, high] affinely: -1 -> low, 1 -> high, 0 -> midpoint.
  next_obs, *_ = e.step(np.array([[-1.0, -1.0]], np.float32))
  np.testing.assert_allclose(next_obs[0, 1:3], [0.0, -3.0], atol=1e-6)
  next_obs, *_ = e.step(np.array([[0.0, 1.0]], np.float32))
  np.testing.assert_allclose(next_obs[0, 1:3], [0.5, 5.0], atol=1e-6)
  next_obs, *_ = e.step(np.array([[-0.5, 0.5]], np.float32))
  np.testing.assert_allclose(next_obs[0, 1:3], [0.25, 3.0], atol=1e-6)
  e.close()


def test_truncation_keeps_true_final_obs_and_does_not_terminate():
  e = envs.TrainEnvs(COUNTER, 2, seed=0)
  obs = e.reset()
  assert np.all(obs[:, 0] == 0)
  for t in range(1, 6):
    next_obs, reward, terminated, done, obs = e.step(np.zeros((2, 2), np.float32))
    np.testing.assert_array_equal(next_obs[:, 0], [t, t])
    np.testing.assert_array_equal(terminated, [0.0, 0.0])
    if t < 5:
      assert not done.any()
      np.testing.assert_array_equal(next_obs, obs)
    else:  # TimeLimit of 5: truncated; next_obs is the final obs, obs the reset obs
      assert done.all()
      np.testing.assert_array_equal(obs[:, 0], [0, 0])
  # The next episode goes on from the reset observation.
  next_obs, *_ = e.step(np.zeros((2, 2), np.float32))
  np.testing.assert_array_equal(next_obs[:, 0], [1, 1])
  e.close()


def test_termination_flag_only_for_the_member_that_terminates():
  e = envs.TrainEnvs(COUNTER, 2, seed=0)
  e.reset()
  next_obs, _, terminated, done, obs = e.step(np.array([[1.0, 0.0], [0.0, 0.0]],
                                                       np.float32))
  np.testing.assert_array_equal(terminated, [1.0, 0.0])
  np.testing.assert_array_equal(done, [True, False])
  np.testing.assert_array_equal(next_obs[:, 0], [1, 1])  # member 0's true final obs
  np.testing.assert_array_equal(obs[:, 0], [0, 1])       # member 0 was reset
  e.close()


def test_real_env_truncation_final_obs_matches_an_independent_rollout():
  """Pendulum with a TimeLimit of 5: the transition's next_obs at the truncation is the
  observation a plain env reaches after 5 steps, not the reset observation."""
  actions = np.random.default_rng(0).uniform(-1, 1, (5, 1, 1)).astype(np.float32)
  e = envs.TrainEnvs(SHORT_PENDULUM, 1, seed=7)
  e.reset()
  for a in actions:
    next_obs, _, terminated, done, obs = e.step(a)
  e.close()
  assert done[0] and terminated[0] == 0.0
  ref = gym.make("Pendulum-v1")
  ref.reset(seed=7)
  for a in actions:
    ref_obs, *_ = ref.step(2.0 * a[0])  # Pendulum's bounds are [-2, 2]
  np.testing.assert_allclose(next_obs[0], ref_obs, rtol=1e-6, atol=1e-6)
  assert not np.allclose(obs[0], ref_obs)  # the obs to act on is the next episode's


def test_inverted_pendulum_terminates_under_a_big_action():
  e = envs.TrainEnvs("InvertedPendulum-v5", 1, seed=0)
  e.reset()
  for t in range(200):
    next_obs, _, terminated, done, _ = e.step(np.ones((1, 1), np.float32))
    if done[0]:
      break
  e.close()
  assert done[0] and terminated[0] == 1.0, f"no termination after {t + 1} steps"
  assert t + 1 < 1000  # well before the 1000-step time limit
  assert abs(next_obs[0, 1]) > 0.2  # the pole angle left the allowed range


def _rollout(seed, members=2, steps=30, asynchronous=False):
  e = envs.TrainEnvs("Pendulum-v1", members, seed=seed, asynchronous=asynchronous)
  out = [e.reset()]
  rng = np.random.default_rng(1)
  for _ in range(steps):
    out.append(e.step(rng.uniform(-1, 1, (members, 1)).astype(np.float32))[0])
  e.close()
  return np.stack(out)


def test_seeding_is_reproducible_and_distinct_per_member():
  a, b, c = _rollout(3), _rollout(3), _rollout(4)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a[0, 0], a[0, 1])  # members start from different states
  # seed 4's member 0 is seed 3's member 1 (member i uses seed + i)
  np.testing.assert_array_equal(c[0, 0], a[0, 1])


def test_async_envs_match_sync_envs():
  np.testing.assert_allclose(_rollout(5, asynchronous=True), _rollout(5), rtol=1e-6)


def test_resume_seeds_differ_from_the_first_reset_and_per_step():
  s0 = envs.resume_seeds(0, 3, 1000)
  assert len(set(s0)) == 3 and s0 == envs.resume_seeds(0, 3, 1000)
  assert s0 != envs.resume_seeds(0, 3, 2000) and not set(s0) & {0, 1, 2}


def test_eval_envs_fresh_starts_each_call_and_resumable_counter():
  def first_obs(ev):
    seen = []
    def policy(o):
      seen.append(o.copy())
      return np.zeros(o.shape[:-1] + (1,), np.float32)
    ev.run(policy)
    return seen[0]
  ev = envs.EvalEnvs(SHORT_PENDULUM, [0, 1], 2)
  o1, o2 = first_obs(ev), first_obs(ev)
  assert not np.allclose(o1, o2)  # fresh start states at every evaluation
  # A resumed run (calls=1) sees the same start states as the uninterrupted run's 2nd eval.
  resumed = envs.EvalEnvs(SHORT_PENDULUM, [0, 1], 2, calls=1)
  np.testing.assert_array_equal(first_obs(resumed), o2)
  ev.close()
  resumed.close()


def test_eval_starts_follow_member_seeds_not_member_indices():
  """Members sharing a seed (a sweep's settings) see the same evaluation starts; a process
  owning only some members (several hosts) seeds them as one process owning all would."""
  def first_obs(seeds):
    ev = envs.EvalEnvs(SHORT_PENDULUM, seeds, 3)
    seen = []
    ev.run(lambda o: seen.append(o.copy()) or np.zeros(o.shape[:-1] + (1,), np.float32))
    ev.close()
    return seen[0]
  grid = first_obs([5, 6, 5, 6])  # 2 settings x seeds 5, 6
  np.testing.assert_array_equal(grid[0], grid[2])
  np.testing.assert_array_equal(grid[1], grid[3])
  assert not np.allclose(grid[0], grid[1])
  assert len({tuple(o) for o in grid[0]}) == 3  # the 3 episode slots start apart
  np.testing.assert_array_equal(first_obs([6]), grid[1:2])  # a subset, as on host 2


def test_eval_returns_shape_and_value():
  ev = envs.EvalEnvs(COUNTER, [0, 1], 3)
  returns = ev.run(lambda o: np.zeros(o.shape[:-1] + (2,), np.float32))
  ev.close()
  np.testing.assert_array_equal(returns, np.full((2, 3), 5.0))  # 5 steps of reward 1


@pytest.mark.parametrize("env_id, needle", [
    ("Hoper-v5", "Hopper-v5"),             # unknown: close names suggested
    ("CartPole-v1", "Discrete"),           # discrete actions
    (DICT_OBS, "observation space"),       # non-Box observations
    ("no_such_module_xyz:Foo-v0", "cannot import module"),
])
def test_check_env_id_rejects_with_a_clear_message(env_id, needle):
  with pytest.raises(envs.EnvSpecError, match=needle) as e:
    envs.check_env_id(env_id)
  assert repr(env_id) in str(e.value)


def test_check_env_id_accepts_module_colon_id():
  e = envs.check_env_id("tests.test_envs:" + COUNTER)
  assert e.action_space.shape == (2,)
  e.close()
  assert envs.env_dims("InvertedPendulum-v5") == (4, 1)


_XML = ("<mujoco><compiler settotalmass='3'/><worldbody><body><joint type='hinge'/>"
        "<geom size='.1'/></body></worldbody></mujoco>")
_WARN = ("import mujoco, numpy as np\n"
         f"for _ in range(2):\n"
         f"  m = mujoco.MjModel.from_xml_string({_XML!r})\n"   # a deprecation warning
         "  d = mujoco.MjData(m); d.qpos[:] = np.nan; mujoco.mj_step(m, d)\n")  # unstable


def test_a_mujoco_warning_is_shown_once_per_process_not_once_per_env():
  """MuJoCo prints a warning at every model compile (gymnasium's half_cheetah.xml raises a
  deprecation under MuJoCo 4 for each of a run's envs): once sac_jax made an env, every
  distinct warning is shown once per process, none hidden."""
  code = ("from sac_jax import envs\n"
          "envs.check_env_id('HalfCheetah-v5')\n"
          "envs.TrainEnvs('HalfCheetah-v5', 2, seed=0)\n"
          "envs.EvalEnvs('HalfCheetah-v5', [0, 1], 2)\n" + _WARN)
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr
  out = proc.stdout + proc.stderr
  assert out.count("'settotalmass' is deprecated") == 1, out
  assert out.count("Nan, Inf or huge value in QPOS") == 1, out
  assert out.count("WARNING (MuJoCo)") == 2, out


def test_a_mujoco_warning_handler_of_the_user_is_left_alone():
  code = ("import mujoco\n"
          "mujoco.set_mju_user_warning(lambda m: print('MINE', m))\n"
          "from sac_jax import envs\n"
          "envs.TrainEnvs('HalfCheetah-v5', 1, seed=0)\n" + _WARN)
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.count("MINE Nan, Inf or huge value in QPOS") == 2, proc.stdout
  assert "WARNING (MuJoCo)" not in proc.stderr, proc.stderr
