r"""What a policy that does nothing scores: the floor a learning curve is read against.

On Ant-v5 the healthy reward pays 1 per step for staying upright, so the zero action scores
about 994 over a 1,000-step episode, and the issue's bar of 1,000 is about standing still.
The reproduction's figures draw this floor on every task panel, and its tables name it.

    python -m experiments.references            # measures every task, prints the table

ZERO_ACTION holds the figures measured with the command above (gymnasium 1.4, MuJoCo 4.0;
10 episodes, env seeds 1000-1009, `env.step(np.zeros(act_dim))` to the end of each
episode). tests/test_references.py measures them again, so a gymnasium or MuJoCo that
changes them fails the test rather than leaving a stale line in a figure.
"""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np

ENV_IDS = dict(halfcheetah="HalfCheetah-v5", hopper="Hopper-v5", walker2d="Walker2d-v5",
               ant="Ant-v5", humanoid="Humanoid-v5", humanoidstandup="HumanoidStandup-v5")
EPISODES = 10
FIRST_SEED = 1000
# task: (mean return, sd over episodes, mean episode length), measured by `measure`.
ZERO_ACTION = dict(
    halfcheetah=(-0.1, 0.8, 1000.0),
    hopper=(129.6, 18.1, 139.0),
    walker2d=(94.8, 8.8, 116.8),
    ant=(994.0, 4.0, 1000.0),
    humanoid=(197.1, 3.0, 40.1),
    humanoidstandup=(29813.4, 21.8, 1000.0),
)


def measure(task: str, episodes: int = EPISODES, first_seed: int = FIRST_SEED
            ) -> tuple[float, float, float]:
  """(mean return, sd, mean length) of the zero action over `episodes` episodes of the
  task's v5 env, reset with seeds first_seed, first_seed + 1, ..."""
  if task not in ENV_IDS:
    raise ValueError(f"task {task!r}: must be one of {tuple(ENV_IDS)}")
  if episodes < 1:
    raise ValueError(f"episodes={episodes}: must be at least 1")
  env = gym.make(ENV_IDS[task])
  zero = np.zeros(env.action_space.shape, env.action_space.dtype)
  returns, lengths = [], []
  try:
    for i in range(episodes):
      env.reset(seed=first_seed + i)
      total, n, done = 0.0, 0, False
      while not done:
        _, r, terminated, truncated, _ = env.step(zero)
        total, n, done = total + float(r), n + 1, terminated or truncated
      returns.append(total)
      lengths.append(n)
  finally:
    env.close()
  return float(np.mean(returns)), float(np.std(returns)), float(np.mean(lengths))


def zero_action(task: str) -> float | None:
  """The stored zero-action return of a task (None for a task not measured)."""
  ref = ZERO_ACTION.get(task)
  return None if ref is None else ref[0]


def main() -> None:
  print(f"zero action, {EPISODES} episodes, env seeds {FIRST_SEED}-"
        f"{FIRST_SEED + EPISODES - 1}")
  for task in ENV_IDS:
    mean, sd, length = measure(task)
    print(f"{ENV_IDS[task]:16s} return {mean:8.1f} ± {sd:5.1f}  length {length:6.1f}")
  sys.stdout.flush()


if __name__ == "__main__":
  main()
