"""Gymnasium environments for M members: one env per member, stepped together.

The agent acts in [-1, 1]^d; `RescaleAction` maps that to each env's bounds. Termination
and truncation stay apart: `terminated` ends the bootstrap, a time-limit truncation does
not. Training envs autoreset in gymnasium's SAME_STEP mode, so the observation returned at
the end of an episode is already the next episode's first; the true final observation
(the bootstrap target of a truncated step) comes from `info["final_obs"]`.

Seeding is by member seed, never by member index, so members with the same seed (the seeds
of a sweep's settings) see the same starts: a training env is seeded with its member's seed
at the first reset (a resumed run reseeds with `resume_seeds`, since the episodes in flight
at a kill restart), and episode slot j of the c-th evaluation of a member with seed s with
`eval_seed(s, c, j)`, so every evaluation sees fresh start states, a resumed run sees the
same ones as an uninterrupted run, and a process that owns only some members (several
hosts) seeds them exactly as a single process would.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from typing import Sequence

import gymnasium as gym
import numpy as np

EVAL_SEED_TAG = 1_000_003  # keeps evaluation seeds apart from training seeds


class EnvSpecError(ValueError):
  """An env id or space that sac_jax cannot train on."""


def check_env_id(env_id: str) -> gym.Env:
  """Makes one env or raises EnvSpecError naming the problem (close names suggested).

  `env_id` may be gymnasium's "module:EnvName-v0" form: the module is imported first (it
  registers the env), as `gym.make` does.
  """
  name = env_id
  if ":" in env_id:
    module, name = env_id.split(":", 1)
    try:
      importlib.import_module(module)
    except ImportError as e:
      raise EnvSpecError(f"env_id={env_id!r}: cannot import module {module!r} ({e})") from None
  if name not in gym.registry:
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise EnvSpecError(f"env_id={env_id!r} is not a registered gymnasium env{hint}")
  show_mujoco_warnings_once()
  env = gym.make(env_id)
  if not isinstance(env.action_space, gym.spaces.Box):
    env.close()
    raise EnvSpecError(f"env_id={env_id!r} has a {type(env.action_space).__name__} action "
                       "space; SAC needs a continuous Box action space")
  if not isinstance(env.observation_space, gym.spaces.Box) or len(
      env.observation_space.shape) != 1:
    env.close()
    raise EnvSpecError(f"env_id={env_id!r} has observation space {env.observation_space};"
                       " sac_jax needs a flat (1-D) Box observation space")
  if not (np.all(np.isfinite(env.action_space.low)) and
          np.all(np.isfinite(env.action_space.high))):
    env.close()
    raise EnvSpecError(f"env_id={env_id!r} has unbounded actions; a bounded Box is needed")
  return env


def env_dims(env_id: str) -> tuple[int, int]:
  env = check_env_id(env_id)
  dims = env.observation_space.shape[0], env.action_space.shape[0]
  env.close()
  return dims


def resume_seeds(seed: int, num_members: int, env_step: int) -> list[int]:
  """Training-env seeds for a run resumed at `env_step` (distinct from the first reset's)."""
  return [int(np.random.SeedSequence([seed, i, env_step]).generate_state(1)[0])
          for i in range(num_members)]


def eval_seed(member_seed: int, call: int, slot: int) -> int:
  """Seed of episode slot `slot` in evaluation number `call` of a member seeded `member_seed`."""
  return int(np.random.SeedSequence([EVAL_SEED_TAG, int(member_seed), int(call), int(slot)]
                                    ).generate_state(1)[0])


def _make(env_id: str):
  def thunk():
    show_mujoco_warnings_once()
    return gym.wrappers.RescaleAction(gym.make(env_id), -1.0, 1.0)
  return thunk


_MUJOCO_WARNINGS_SEEN: set[str] = set()


def _mujoco_warning(message: str) -> None:
  if message not in _MUJOCO_WARNINGS_SEEN:
    _MUJOCO_WARNINGS_SEEN.add(message)
    print(f"WARNING (MuJoCo): {message} (shown once per process)", file=sys.stderr,
          flush=True)


def show_mujoco_warnings_once() -> None:
  """Every env this module makes calls this first. MuJoCo prints its warnings at every model compile: gymnasium's half_cheetah.xml
  raises a deprecation warning under MuJoCo 4 for each of a run's envs (and again at
  every resume). Each distinct warning is shown once per process instead; a handler
  the user installed is left alone."""
  mujoco = sys.modules.get("mujoco")
  if mujoco is None:
    try:
      import mujoco
    except ImportError:  # no MuJoCo envs: nothing to do
      return
  if mujoco.get_mju_user_warning() is None:
    mujoco.set_mju_user_warning(_mujoco_warning)


class TrainEnvs:
  """M training envs stepped together; `step` returns what the replay buffer needs."""

  def __init__(self, env_id: str, num_members: int, seed: int, asynchronous: bool = False):
    fns = [_make(env_id) for _ in range(num_members)]
    kwargs = dict(autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    self.env = (gym.vector.AsyncVectorEnv(fns, **kwargs) if asynchronous
                else gym.vector.SyncVectorEnv(fns, **kwargs))
    self.num_members = num_members
    self.seed = seed

  def reset(self, seeds: Sequence[int] | None = None) -> np.ndarray:
    """Resets all envs: member i with `seeds[i]`, by default `seed + i`."""
    if seeds is None:
      seeds = [self.seed + i for i in range(self.num_members)]
    obs, _ = self.env.reset(seed=[int(s) for s in seeds])
    return obs.astype(np.float32)

  def step(self, action: np.ndarray):
    """Returns (next_obs for the transition, reward, terminated, done, obs to act on).

    At an episode end `next_obs` is the true final observation and the returned obs is
    the reset observation of the next episode.
    """
    obs, reward, terminated, truncated, info = self.env.step(np.asarray(action))
    done = np.logical_or(terminated, truncated)
    next_obs = obs.copy()
    if done.any():
      final = info["final_obs"]
      for i in np.flatnonzero(done):
        next_obs[i] = final[i]
    return (next_obs.astype(np.float32), reward.astype(np.float32),
            terminated.astype(np.float32), done, obs.astype(np.float32))

  def close(self):
    self.env.close()


class EvalEnvs:
  """`episodes` evaluation envs per member, each running one episode, stepped in lockstep.

  `run(policy)` calls `policy(obs[M, n, obs_dim]) -> actions[M, n, act_dim]` once per step
  for all members and episodes and returns the undiscounted returns [M, n].
  """

  def __init__(self, env_id: str, member_seeds: Sequence[int], episodes: int,
               calls: int = 0):
    self.seeds = [int(s) for s in member_seeds]
    self.m, self.n = len(self.seeds), episodes
    self.envs = [_make(env_id)() for _ in range(self.m * episodes)]
    self.calls = calls  # evaluations so far (host state a checkpoint keeps)

  def run(self, policy) -> np.ndarray:
    m, n = self.m, self.n
    # Each evaluation uses fresh start states: the seed advances with every call.
    seeds = [eval_seed(s, self.calls, j) for s in self.seeds for j in range(n)]
    self.calls += 1
    obs = np.stack([e.reset(seed=sd)[0] for sd, e in zip(seeds, self.envs)])
    obs = obs.astype(np.float32)
    returns = np.zeros(m * n, np.float64)
    active = np.ones(m * n, bool)
    while active.any():
      actions = np.asarray(policy(obs.reshape(m, n, -1))).reshape(m * n, -1)
      for i in np.flatnonzero(active):
        o, r, term, trunc, _ = self.envs[i].step(actions[i])
        returns[i] += r
        obs[i] = o
        if term or trunc:
          active[i] = False
    return returns.reshape(m, n)

  def close(self):
    for e in self.envs:
      e.close()
