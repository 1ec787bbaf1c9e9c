"""The host loop: collect, update, evaluate.

One jitted device call per env step for all members (insert the last transition, G
gradient steps, next actions); the envs step on the host in between.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, NamedTuple

import jax
import numpy as np

from sac_jax import agent as agent_lib
from sac_jax import envs as envs_lib
from sac_jax import replay


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  env_id: str
  num_members: int = 1
  seed: int = 0
  total_env_steps: int = 100_000   # per member
  eval_every: int = 1000
  eval_episodes: int = 10
  async_envs: bool = False


class EvalRecord(NamedTuple):
  env_step: int
  returns: np.ndarray                  # [M, eval_episodes]
  train_metrics: dict[str, np.ndarray]  # name -> [M], from the last update call
  sps: float                            # env steps per second per member since last eval


def member_keys(seed: int, num_members: int) -> jax.Array:
  """Member i's PRNG key comes from seed + i (as does its training env's seed)."""
  return jax.vmap(jax.random.PRNGKey)(np.arange(num_members) + seed)


def train(sac_config: agent_lib.SACConfig, loop_config: LoopConfig,
          hparams: agent_lib.HParams | None = None,
          on_eval: Callable[[EvalRecord], None] | None = None) -> list[EvalRecord]:
  """Trains M members from scratch; returns one EvalRecord per evaluation."""
  lc = loop_config
  obs_dim, act_dim = envs_lib.env_dims(lc.env_id)
  ag = agent_lib.Agent(sac_config, obs_dim, act_dim)
  state = ag.init_members(member_keys(lc.seed, lc.num_members), hparams)
  step_fn = ag.make_step()
  eval_act = ag.make_eval_act()
  train_envs = envs_lib.TrainEnvs(lc.env_id, lc.num_members, lc.seed, lc.async_envs)
  eval_envs = envs_lib.EvalEnvs(lc.env_id, lc.num_members, lc.eval_episodes, lc.seed)

  obs = train_envs.reset()
  transition = agent_lib.empty_transition(lc.num_members, obs_dim, act_dim)
  history: list[EvalRecord] = []
  metrics = {}
  t_last, step_last = time.perf_counter(), 0
  try:
    for t in range(lc.total_env_steps):
      state, action, metrics = step_fn(state, transition, t > 0, obs,
                                       ag.ready_to_update(t))
      action = np.asarray(action)
      next_obs, reward, terminated, _, obs_after = train_envs.step(action)
      transition = replay.Transition(obs, action, reward, next_obs, terminated)
      obs = obs_after
      if (t + 1) % lc.eval_every == 0 or t + 1 == lc.total_env_steps:
        now = time.perf_counter()
        sps = (t + 1 - step_last) / max(now - t_last, 1e-9)
        returns = eval_envs.run(
            lambda o: eval_act(state.policy_params, state.q_params, o))
        record = EvalRecord(t + 1, returns, jax.tree.map(np.asarray, metrics), sps)
        history.append(record)
        if on_eval is not None:
          on_eval(record)
        t_last, step_last = time.perf_counter(), t + 1
  finally:
    train_envs.close()
    eval_envs.close()
  return history
