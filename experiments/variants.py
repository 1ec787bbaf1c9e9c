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
"""

from __future__ import annotations

import gymnasium as gym

HUMANOID_NO_CONTACT_FORCES = "HumanoidNoContactForces-v5"

if HUMANOID_NO_CONTACT_FORCES not in gym.registry:
  _base = gym.spec("Humanoid-v5")
  gym.register(id=HUMANOID_NO_CONTACT_FORCES, entry_point=_base.entry_point,
               max_episode_steps=_base.max_episode_steps,
               kwargs=dict(_base.kwargs, include_cfrc_ext_in_observation=False))
