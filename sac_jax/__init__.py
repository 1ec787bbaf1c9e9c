"""sac_jax: Soft Actor-Critic as the original paper describes it, in functional JAX.

The public API (imported lazily, so `import sac_jax` stays cheap until a name is used):

    sac_jax.log_prob, sac_jax.squashed_log_prob, sac_jax.sample   the mixture contract
                                                                 (sac_jax.gmm)
    sac_jax.SACConfig, sac_jax.HParams, sac_jax.Agent             the learner (sac_jax.agent)
    sac_jax.LoopConfig, sac_jax.train                             the host loop (sac_jax.loop)
    sac_jax.__version__

Example:

    import sac_jax
    cfg = sac_jax.SACConfig(hidden_sizes=(64, 64))
    history = sac_jax.train(cfg, sac_jax.LoopConfig("Pendulum-v1", num_members=2,
                                                    total_env_steps=5000))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"  # the one place the version is defined (setup.cfg reads it)

# public name -> the submodule that defines it
_EXPORTS = {
    "log_prob": "gmm",
    "squashed_log_prob": "gmm",
    "sample": "gmm",
    "SACConfig": "agent",
    "HParams": "agent",
    "Agent": "agent",
    "LoopConfig": "loop",
    "train": "loop",
    "load_policy": "policy",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
  module = _EXPORTS.get(name)
  if module is None:
    raise AttributeError(f"module 'sac_jax' has no attribute {name!r}")
  value = getattr(importlib.import_module(f"sac_jax.{module}"), name)
  globals()[name] = value  # later lookups skip __getattr__
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_EXPORTS))
