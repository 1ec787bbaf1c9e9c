"""experiments.variants: the registered task variants are the v5 tasks less exactly what
they say, and a run reaches them by the "module:EnvName" id."""

import gymnasium as gym
import numpy as np

from experiments import variants
from sac_jax import envs


def test_humanoid_without_contact_forces_is_humanoid_v5_less_cfrc_ext():
  env = envs.check_env_id(f"experiments.variants:{variants.HUMANOID_NO_CONTACT_FORCES}")
  base = gym.make("Humanoid-v5")
  try:
    assert env.observation_space.shape == (270,) and base.observation_space.shape == (348,)
    assert env.spec.max_episode_steps == base.spec.max_episode_steps == 1000
    obs, _ = env.reset(seed=3)
    full, _ = base.reset(seed=3)
    # The first 270 entries (qpos[2:], qvel, cinert, cvel, qfrc_actuator) are Humanoid-v5's;
    # the 78 dropped are its cfrc_ext.
    np.testing.assert_array_equal(obs, full[:270])
    action = np.full(env.action_space.shape, 0.1, np.float32)
    for _ in range(5):
      obs, r, term, trunc, _ = env.step(action)
      full, r_full, term_full, trunc_full, _ = base.step(action)
    np.testing.assert_array_equal(obs, full[:270])
    assert (r, term, trunc) == (r_full, term_full, trunc_full)
    np.testing.assert_array_equal(
        full[270:], base.unwrapped.data.cfrc_ext[1:].ravel())
  finally:
    env.close()
    base.close()
  assert envs.env_dims(f"experiments.variants:{variants.HUMANOID_NO_CONTACT_FORCES}") == (
      270, 17)


def test_humanoid_symlog_is_humanoid_v5_with_symlog_observations():
  """Every observation entry is sign(x) log(1 + |x|) of Humanoid-v5's (float64 reference),
  step by step; rewards, termination and the time limit are Humanoid-v5's."""
  env_id = f"experiments.variants:{variants.HUMANOID_SYMLOG}"
  env = envs.check_env_id(env_id)
  base = gym.make("Humanoid-v5")
  try:
    assert env.observation_space.shape == base.observation_space.shape == (348,)
    assert env.spec.max_episode_steps == base.spec.max_episode_steps == 1000
    ref = lambda x: np.sign(x) * np.log(1.0 + np.abs(np.asarray(x, np.float64)))
    obs, _ = env.reset(seed=4)
    full, _ = base.reset(seed=4)
    np.testing.assert_allclose(obs, ref(full), rtol=1e-9, atol=1e-15)
    rng = np.random.default_rng(0)
    big = 0.0
    for _ in range(20):
      action = rng.uniform(-0.4, 0.4, env.action_space.shape)
      obs, r, term, trunc, _ = env.step(action)
      full, r_full, term_full, trunc_full, _ = base.step(action)
      np.testing.assert_allclose(obs, ref(full), rtol=1e-9, atol=1e-15)
      assert (r, term, trunc) == (r_full, term_full, trunc_full)
      big = max(big, np.abs(full).max())
      if term:
        break
    # The case the variant is for: raw entries in the tens or more, squashed below ~10.
    assert big > 20.0 and np.abs(obs).max() < 10.0
  finally:
    env.close()
    base.close()
  assert envs.env_dims(env_id) == (348, 17)
