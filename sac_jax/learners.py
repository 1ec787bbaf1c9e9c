"""The learners behind one interface: which config a run's settings name, and the learner
for a config.

    config_from(values)          -> agent.SACConfig, or ddpg.DDPGConfig for algorithm "ddpg"
    make(config, obs_dim, act_dim) -> agent.Agent or ddpg.DDPGAgent (same methods: init,
                                    step, update, act, eval_action, ...)

The one module that knows every algorithm, so that neither `settings` (the declarations)
nor `agent` (SAC) imports `ddpg`, which builds on `agent`.
"""

from __future__ import annotations

from typing import Any, Mapping

from sac_jax import agent, ddpg, settings


def config_from(values: Mapping[str, Any]) -> agent.SACConfig | ddpg.DDPGConfig:
  """The learner's config for settings `values` (e.g. the CLI's, or a run.json's).

  Every config field that is a setting takes its value from `values`
  (`settings.fields_from`: a field missing there keeps the config's default); DDPG's
  learning rates default to `lr` (SAC's config does that itself). The config validates
  itself (ValueError naming the value); an unknown algorithm is refused the same way.
  """
  algorithm = values.get("algorithm", "sac")
  why = settings.BY_NAME["algorithm"].refusal(algorithm)
  if why:
    raise ValueError(why)
  cls = ddpg.DDPGConfig if algorithm == "ddpg" else agent.SACConfig
  kw = settings.fields_from(cls, values)
  if algorithm == "ddpg":
    for name in settings.learning_rates("ddpg"):
      if kw.get(name) is None and values.get("lr") is not None:
        kw[name] = values["lr"]
  return cls(**kw)


def make(config: Any, obs_dim: int, act_dim: int) -> agent.Agent:
  """The learner for a config: SACConfig -> agent.Agent, DDPGConfig -> ddpg.DDPGAgent."""
  if isinstance(config, ddpg.DDPGConfig):
    return ddpg.DDPGAgent(config, obs_dim, act_dim)
  if isinstance(config, agent.SACConfig):
    return agent.Agent(config, obs_dim, act_dim)
  raise TypeError(f"no learner for a config of type {type(config).__name__}; "
                  "allowed: agent.SACConfig, ddpg.DDPGConfig")
