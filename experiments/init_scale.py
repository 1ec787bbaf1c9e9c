r"""Where a freshly initialized paper-size policy starts on each task's states: how large its
pre-squash means are, and how many sit in the tanh's flat tails or at the log-std bounds.

    python -m experiments.init_scale                   # every task, a markdown table
    python -m experiments.init_scale Humanoid-v5 experiments.variants:HumanoidNoContactForces-v5

Per task: 1,000 states visited by uniform random actions (env seed 0, numpy seed 0, reset
at each episode's end), the policy of `agent.SACConfig()` (K = 4, 128 x 128, ReLU, soft
log-std bounds (-5, 2)) initialized (flax's default init) from PRNG keys 0-4, once as the
paper has it and once with `--obs_transform=symlog`; reported over the five inits (mean)
and all states, components and action dimensions: the RMS of the means, the share with
|mu| > 3 (tanh(3) = 0.995: the action barely moves with mu there, and with the exact squash
term log pi grows as 2|mu|), and the share of log-stds within 0.5 of a bound. Why it
matters: the paper's likelihood-ratio gradient moves a mean by the score (u - mu)/sigma^2
times an advantage; a policy that starts in the tails, its sigma at the floor, gets no
signal from Q there and a noise that scales with V's error / sigma (docs/reproduction.md,
Humanoid). It is a property of the observation scale and the initialization, not of
training: no update is made.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import gymnasium as gym
import numpy as np

TASKS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5",
         "HumanoidStandup-v5")
STATES = 1000
INITS = 5
TAIL = 3.0
BOUND_MARGIN = 0.5


class InitScale(NamedTuple):
  obs_max: float      # largest |observation entry| over the states, as the networks see it
  obs_rms: float      # RMS of those entries
  mean_rms: float     # RMS of the pre-squash means (mean over inits)
  tail_share: float   # share of means with |mu| > TAIL (mean over inits)
  bound_share: float  # share of log-stds within BOUND_MARGIN of a bound (mean over inits)


def random_states(env_id: str, num: int = STATES, seed: int = 0) -> np.ndarray:
  """[num, obs_dim] float32: the states uniform random actions visit, from env seed `seed`."""
  env = gym.make(env_id)
  rng = np.random.default_rng(seed)
  try:
    obs, _ = env.reset(seed=seed)
    states = []
    for _ in range(num):
      obs, _, terminated, truncated, _ = env.step(
          rng.uniform(env.action_space.low, env.action_space.high).astype(
              env.action_space.dtype))
      states.append(obs)
      if terminated or truncated:
        obs, _ = env.reset()
  finally:
    env.close()
  return np.asarray(states, np.float32)


def summarize(means: np.ndarray, log_stds: np.ndarray, low: float, high: float
              ) -> tuple[float, float, float]:
  """(RMS of means, share |mu| > TAIL, share of log-stds within BOUND_MARGIN of low/high)."""
  means = np.asarray(means, np.float64)
  log_stds = np.asarray(log_stds, np.float64)
  at_bound = (log_stds < low + BOUND_MARGIN) | (log_stds > high - BOUND_MARGIN)
  return (float(np.sqrt(np.mean(means ** 2))), float(np.mean(np.abs(means) > TAIL)),
          float(np.mean(at_bound)))


def measure(env_id: str, states: int = STATES, inits: int = INITS,
            obs_transform: str = "none") -> InitScale:
  import jax

  from sac_jax import agent, envs, networks
  cfg = agent.SACConfig(obs_transform=obs_transform)  # a bad transform fails here
  obs_dim, act_dim = envs.env_dims(env_id)  # an unknown id fails here, naming close ones
  obs = random_states(env_id, states)
  ag = agent.Agent(cfg, obs_dim, act_dim)
  policy = ag.nets.policy  # the network Agent.init initializes (its replay is not needed)
  rows = []
  for k in range(inits):
    out = policy.apply(policy.init(jax.random.PRNGKey(k), obs[:1]), obs)
    rows.append(summarize(out.means, out.log_stds, cfg.log_std_min, cfg.log_std_max))
  mean_rms, tail, bound = np.mean(rows, axis=0)
  seen = np.asarray(networks.transform_obs(obs, obs_transform), np.float64)
  obs_rms = np.sqrt(np.mean(np.square(seen)))
  return InitScale(float(np.abs(seen).max()), float(obs_rms), float(mean_rms), float(tail),
                   float(bound))


def main(argv: list[str]) -> None:
  from sac_jax import envs
  env_ids = argv[1:] or list(TASKS)
  for env_id in env_ids:  # every id checked before any is measured
    try:
      envs.env_dims(env_id)
    except envs.EnvSpecError as e:
      print(f"init_scale: {e}", file=sys.stderr)
      sys.exit(2)
  print("| task | obs_transform | largest obs entry | obs RMS | init means RMS | "
        "share |mu| > 3 | share of log-stds at a bound |")
  print("|---|---|---|---|---|---|---|")
  for env_id in env_ids:
    for transform in ("none", "symlog"):
      r = measure(env_id, obs_transform=transform)
      print(f"| {env_id} | {transform} | {r.obs_max:,.0f} | {r.obs_rms:.1f} | "
            f"{r.mean_rms:.2f} | {r.tail_share:.2f} | {r.bound_share:.2f} |", flush=True)


if __name__ == "__main__":
  main(sys.argv)
