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
