"""What the host loop (sac_jax.loop) and its recorders (sac_jax.recorders, or yours) share.

The loop's config (`LoopConfig`) and its own progress (`LoopState`); what it hands a
recorder (`RunInfo` at the start, `EvalRecord` at each evaluation, `ResumePoint`s to
checkpoint or restore); what a recorder may return (`Stop`); the `Recorder` protocol itself;
the loop's `Interrupted` and `RecorderWarning`. The protocol's calls are described in
sac_jax.loop, which re-exports every name here: `sac_jax.loop.LoopConfig` is this
`LoopConfig`. A module of its own so that recorders need not import the loop that calls
them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, NamedTuple, Protocol, runtime_checkable

import numpy as np

from sac_jax import agent as agent_lib
from sac_jax import parallel
from sac_jax import replay
from sac_jax import settings


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  env_id: str
  num_members: int = 1
  seed: int = 0
  total_env_steps: int = 100_000   # per member
  eval_every: int = 1000
  eval_episodes: int = 10
  async_envs: bool = False
  # The next eight only configure the default recorders (`train(..., recorders=None)`,
  # sac_jax.recorders.defaults): with recorders given, the loop ignores them.
  run_dir: str | None = None       # None: no files, no checkpoints, no resume
  checkpoint_every: int = 0        # env steps between checkpoints; 0: only at the end
  max_to_keep: int = 2             # checkpoints kept
  keep_every: int = 0              # also kept: checkpoints at multiples of this (0: none)
  log_every_s: float = 5.0         # progress line period; <= 0: no progress lines
  title: str = ""                  # for the plot and progress lines
  # Start a new run from another run's checkpoint (its run_dir, the env step of one of
  # its checkpoints): the run directory then restores that state, with this run's
  # per-member hyperparameters (`Agent.branch_state`), and copies the source's
  # metrics.csv rows up to that step, when it has no checkpoint of its own yet.
  branch_from: str | None = None
  branch_step: int | None = None
  # Extra per-member columns for metrics.csv (e.g. a sweep's labels): one dict per member.
  # A "setting" column groups members: curves.png draws one curve per setting (mean over
  # its members) and summary.json ranks the settings.
  member_columns: tuple[dict, ...] | None = None
  # Member i's seed (PRNG key, training env); None: seed + i. A sweep gives every setting
  # the same seeds, seed + seed_index (common random numbers).
  member_seeds: tuple[int, ...] | None = None
  # Devices the member axis is spread over (sac_jax.parallel): 0 = all devices (of all
  # processes after jax.distributed.initialize), 1 = no sharding. The member count must be
  # a multiple of it.
  num_devices: int = 0
  # Overlap the device's update with the host's env step: per env step, `Agent.act` (the
  # action from the current params), then `Agent.store_and_update` (insert, G gradient
  # steps) dispatched without waiting, while the envs step. Actions then lag the
  # synchronous path by one update: the action at env step t comes from the params after
  # the update of step t - 1 (False: one fused call, the action follows the update of t).
  overlap: bool = False

  def __post_init__(self):
    settings.validate(settings.config_values(self))  # the rules of the run's settings
    if self.branch_from is not None and self.run_dir is None:
      raise ValueError(f"branch_from={self.branch_from!r} needs a run_dir: the branch is "
                       "a run of its own, written to its own directory")
    if self.branch_from is not None and (os.path.abspath(self.branch_from)
                                         == os.path.abspath(self.run_dir)):
      raise ValueError(f"branch_from={self.branch_from!r} is this run's own run_dir; a "
                       "branch writes to a new run_dir")

  def seeds(self) -> list[int]:
    if self.member_seeds is None:
      return [self.seed + i for i in range(self.num_members)]
    if len(self.member_seeds) != self.num_members:
      raise ValueError(f"member_seeds has {len(self.member_seeds)} entries for "
                       f"{self.num_members} members")
    return [int(x) for x in self.member_seeds]


class EvalRecord(NamedTuple):
  """One evaluation of this process's members (all members with one process)."""
  env_step: int
  returns: np.ndarray                  # [m, eval_episodes], m = len(members); NaN: diverged
  train_metrics: dict[str, np.ndarray]  # name -> [m], from the last update; {} before one
  sps: float                            # env steps per second per member since last eval
  members: range                        # the global member index of each row
  diverged_at: np.ndarray               # [m] int: env step a member froze at; -1: healthy
  all_means: np.ndarray                 # [M] mean return of every member (all processes)
  all_diverged_at: np.ndarray           # [M] diverged_at of every member
  wall_time: float                      # training seconds so far (all calls of a run)


class LoopState(NamedTuple):
  """The loop's own progress: saved and restored as a unit with the TrainState."""
  env_step: int                     # env steps per member so far
  transition: replay.Transition     # the last transition, not yet stored ([m] host arrays)
  has_transition: bool              # False before the first env step
  eval_calls: int                   # evaluations so far (they seed the eval episodes)
  wall_time: float                  # training seconds so far (all calls of a run)

  def host(self) -> dict:
    """Every field but the transition, JSON-able (the transition goes with the arrays)."""
    return dict(env_step=int(self.env_step), has_transition=bool(self.has_transition),
                eval_calls=int(self.eval_calls), wall_time=float(self.wall_time))

  @classmethod
  def from_host(cls, host: dict, transition: replay.Transition) -> "LoopState":
    return cls(env_step=int(host["env_step"]), transition=transition,
               has_transition=bool(host["has_transition"]),
               eval_calls=int(host["eval_calls"]), wall_time=float(host["wall_time"]))


class ResumePoint(NamedTuple):
  """Where training (re)starts: the stacked TrainState (global arrays) and the LoopState.

  `branched`: the state is another run's (LoopConfig.branch_from); `train` gives it this
  run's hyperparameters (`Agent.branch_state`) instead of checking they are unchanged."""
  state: agent_lib.TrainState
  loop: LoopState
  branched: bool = False


class Stop(NamedTuple):
  """Returned by `after_step` to end training after this step.

  With a `signum` (SIGINT/SIGTERM) `train` raises `Interrupted`; without, it returns.
  """
  signum: int | None = None
  checkpointed: bool = False
  reason: str = ""


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """What a recorder learns in `start`: what is trained, on which members, where."""
  sac_config: agent_lib.SACConfig
  loop_config: LoopConfig
  hparams: agent_lib.HParams        # [M] host arrays, every member
  metric_names: list[str]           # the training metrics (EvalRecord.train_metrics keys)
  placement: parallel.Placement     # this process's members; put/local


@runtime_checkable
class Recorder(Protocol):
  """What the loop calls; subclass `recorders.Recorder` to get no-op defaults."""

  def start(self, run: RunInfo) -> None: ...
  def restore(self, like: ResumePoint) -> ResumePoint | None: ...
  def on_eval(self, record: EvalRecord) -> None: ...
  def after_step(self, loop: LoopState, snapshot: Callable[[], ResumePoint]
                 ) -> Stop | None: ...
  def close(self, loop: LoopState, complete: bool) -> None: ...


class Interrupted(Exception):
  """SIGINT/SIGTERM arrived; a checkpoint at `env_step` was written (with a run_dir)."""

  def __init__(self, signum: int, env_step: int, checkpointed: bool):
    import signal
    self.signum, self.env_step, self.checkpointed = signum, env_step, checkpointed
    super().__init__(f"{signal.Signals(signum).name} at env step {env_step}")


class RecorderWarning(UserWarning):
  """A recorder failed; training went on without that call."""


def devices_for(lc: LoopConfig) -> list:
  """The devices the members are spread over; raises ValueError if they do not divide."""
  devs = parallel.member_devices(lc.num_devices)
  parallel.check_divisible(lc.num_members, len(devs))
  return devs
