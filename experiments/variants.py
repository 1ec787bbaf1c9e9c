r"""Task variants the reproduction measures beside the gymnasium v5 tasks, registered under
their own ids so a run names them in `--env_id` ("module:EnvName", as gymnasium's make
takes it; from the repository root):

    python -m experiments.run --flagfile=experiments/flags/humanoid.flags \
        --env_id=experiments.variants:HumanoidNoContactForces-v5

HumanoidNoContactForces-v5: Humanoid-v5 without the external contact forces (`cfrc_ext`,
78 of its 348 observation entries; gymnasium's `include_cfrc_ext_in_observation=False`),
everything else of Humanoid-v5 unchanged (rewards, termination, 1000-step limit). Why:
those entries reach about 4,000 in magnitude where the rest stay within about 120, and a
freshly initialized paper-size policy then outputs pre-squash means in the hundreds
(docs/reproduction.md, Humanoid). The SAC results most often compared against were
trained on Humanoid-v2/v3 under mujoco-py 2, where these entries were always zero
(gymnasium's Humanoid documentation), so their policies never saw contact forces either.

HumanoidSymlog-v5: Humanoid-v5 whose every observation entry x is replaced by
symlog(x) = sign(x) log(1 + |x|) (the input squashing of Hafner et al.'s DreamerV3), rewards,
termination and time limit unchanged. Why: on Humanoid-v5's states (observation RMS ~29,
largest entries ~3,000) a freshly initialized paper-size policy already outputs pre-squash
means of RMS ~14, most of them in the tanh's flat tails, where its log-stds also start at
the soft bounds (Walker2d-v5: RMS ~2). symlog is monotone, keeps the sign, needs no
statistics (so no state to checkpoint) and maps 3,000 to 8: it tests whether the input scale
is what keeps the paper's gradient from leaving the tails, without the running statistics
an observation normalizer would add.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

HUMANOID_NO_CONTACT_FORCES = "HumanoidNoContactForces-v5"
HUMANOID_SYMLOG = "HumanoidSymlog-v5"


def symlog(x: np.ndarray) -> np.ndarray:
  """sign(x) log(1 + |x|), elementwise, in x's dtype."""
  return np.sign(x) * np.log1p(np.abs(x))


def _symlog_humanoid(**kwargs) -> gym.Env:
  from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv
  env = HumanoidEnv(**kwargs)
  space = gym.spaces.Box(-np.inf, np.inf, env.observation_space.shape,
                         env.observation_space.dtype)
  return gym.wrappers.TransformObservation(
      env, lambda obs: symlog(obs).astype(space.dtype), space)


if HUMANOID_NO_CONTACT_FORCES not in gym.registry:
  _base = gym.spec("Humanoid-v5")
  gym.register(id=HUMANOID_NO_CONTACT_FORCES, entry_point=_base.entry_point,
               max_episode_steps=_base.max_episode_steps,
               kwargs=dict(_base.kwargs, include_cfrc_ext_in_observation=False))

if HUMANOID_SYMLOG not in gym.registry:
  _base = gym.spec("Humanoid-v5")
  gym.register(id=HUMANOID_SYMLOG, entry_point=_symlog_humanoid,
               max_episode_steps=_base.max_episode_steps, kwargs=dict(_base.kwargs))
