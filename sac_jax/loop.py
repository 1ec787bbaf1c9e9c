"""The host loop: collect, update, evaluate; everything else is a recorder's.

One jitted device call per env step for all members (insert the last transition, G
gradient steps, next actions); the envs step on the host in between. With
`LoopConfig.overlap` two calls instead: act from the current params, then dispatch the
insert and the G gradient steps without waiting, so the device updates while the host
steps the envs; the actions then lag by one update (the action at env step t comes from
the params after the update of env step t - 1). Every `eval_every`
env steps (and at the end) each member's deterministic policy plays `eval_episodes`
episodes. The loop writes no file and prints no line: it hands its events to recorders
(sac_jax.recorders: the run directory with its checkpoints, the progress line,
TensorBoard, or your own) through the small `Recorder` protocol (defined, with the types
it passes, in sac_jax.protocol):

    start(run)                    once, before anything: what is trained, and where
    restore(like) -> point|None   a resume point (TrainState + LoopState) or None; one
                                  marked `branched` is another run's state (branch_from)
    on_eval(record)               after each evaluation
    after_step(loop, snapshot)    after each env step; may checkpoint (`snapshot()` gives
                                  the current TrainState and LoopState) or return a Stop
    close(loop, complete)         once, at the end (also after an error or a Stop)

A recorder that raises in on_eval, after_step or close is warned about (once per recorder,
method and kind of error) and skipped for that call: reporting never stops training.
`start` and `restore` errors propagate (they happen before any training).

The loop's own progress (env step, the pending transition and its flag, the evaluation
counter, wall time) is one `LoopState`, saved and restored as a unit together with the
TrainState. A member whose numbers stop being finite is frozen on the device
(`Agent.step`, `TrainState.diverged_at`); its evaluation returns are NaN (missing) and its
evaluation actions zeros.

Several processes (after `jax.distributed.initialize`, see sac_jax.parallel): every
process runs this same loop in lockstep over the same global state, but steps only the
envs of its own block of members (`Placement.members`), feeds them as process-local data,
and evaluates only them; EvalRecord carries this process's rows and every member's mean
(an allgather). Recorders must then be the same on every process.
"""

from __future__ import annotations

import functools
import time
import warnings
from typing import Any, Callable, Sequence

import jax
import numpy as np

from sac_jax import agent as agent_lib
from sac_jax import envs as envs_lib
from sac_jax import learners
from sac_jax import parallel
from sac_jax import replay
from sac_jax.protocol import (EvalRecord, Interrupted, LoopConfig, LoopState, Recorder,
                              RecorderWarning, ResumePoint, RunInfo, Stop, devices_for)

__all__ = ["train", "seed_keys", "check_resumed_hparams",  # and, from sac_jax.protocol:
           "LoopConfig", "LoopState", "EvalRecord", "ResumePoint", "RunInfo", "Stop",
           "Recorder", "Interrupted", "RecorderWarning", "devices_for"]


def seed_keys(seeds: Sequence[int]) -> np.ndarray:
  """One PRNG key per member seed (equal seeds give equal keys), as host data."""
  return np.asarray(jax.vmap(jax.random.PRNGKey)(np.asarray(seeds)))


def _resume_seeds(lc: LoopConfig, env_step: int) -> list[int]:
  """Training-env seeds after a resume; members sharing a seed share these too."""
  idx = [s - lc.seed for s in lc.seeds()]
  if min(idx) < 0:  # seeds not of the form seed + index: derive from each seed alone
    return [envs_lib.resume_seeds(s, 1, env_step)[0] for s in lc.seeds()]
  table = envs_lib.resume_seeds(lc.seed, max(idx) + 1, env_step)
  return [table[i] for i in idx]


class _Guarded:
  """Calls every recorder's method in order; one that raises is warned about (once per
  recorder, method and error type) and skipped for that call."""

  def __init__(self, recorders: Sequence[Any]):
    self.recorders = list(recorders)
    self._warned: set = set()

  def call(self, method: str, *args) -> list:
    out = []
    for r in self.recorders:
      fn = getattr(r, method, None)
      if fn is None:
        continue
      try:
        out.append(fn(*args))
      except Exception as e:  # noqa: BLE001 - reporting never stops training
        key = (id(r), method, type(e))
        if key not in self._warned:
          self._warned.add(key)
          warnings.warn(f"recorder {type(r).__name__}.{method} failed and is skipped "
                        f"(training goes on; warned once): {type(e).__name__}: {e}",
                        RecorderWarning, stacklevel=2)
    return out


class _OnEval:
  """Adapts the old `on_eval=` callback to a recorder."""

  def __init__(self, fn: Callable[[EvalRecord], None]):
    self.fn = fn

  def on_eval(self, record: EvalRecord) -> None:
    self.fn(record)


def check_resumed_hparams(restored: agent_lib.HParams, given: agent_lib.HParams,
                          members: range) -> None:
  """Raises ValueError naming the first hyperparameter the resume point disagrees on."""
  for name in type(given)._fields:
    old = np.asarray(getattr(restored, name), np.float32)
    new = np.asarray(getattr(given, name), np.float32)[list(members)]
    bad = np.flatnonzero(old != new)
    if bad.size:
      k = int(bad[0])
      raise ValueError(
          f"cannot resume: the checkpoint's {name}={old[k]:g} (member {members[k]}) "
          f"differs from the given {name}={new[k]:g}; a resumed run keeps its "
          "checkpoint's hyperparameters, so pass the same hparams (or start a new run_dir)")


def train(sac_config: agent_lib.SACConfig, loop_config: LoopConfig,
          hparams: agent_lib.HParams | None = None,
          on_eval: Callable[[EvalRecord], None] | None = None,
          recorders: Sequence[Recorder] | None = None) -> list[EvalRecord]:
  """Trains M members, resuming from the first recorder that offers a resume point.

  `recorders` None: `sac_jax.recorders.defaults(loop_config)` (the run directory when
  `run_dir` is set, the progress line). Returns one EvalRecord per evaluation made by this
  call (of this process's members). Raises `Interrupted` when a recorder stops training on
  SIGINT or SIGTERM (the run directory does, after writing a checkpoint). With several
  processes every process calls this with the same arguments.
  """
  lc = loop_config
  obs_dim, act_dim = envs_lib.env_dims(lc.env_id)
  ag = learners.make(sac_config, obs_dim, act_dim)
  place = parallel.Placement(lc.num_members, devices_for(lc))
  seeds = place.select(lc.seeds())  # this process's members' seeds
  if hparams is None:
    hparams = ag.default_hparams(lc.num_members)
  if recorders is None:
    from sac_jax import recorders as recorders_lib
    recorders = recorders_lib.defaults(lc)
  recorders = list(recorders) + ([_OnEval(on_eval)] if on_eval is not None else [])
  for r in recorders:
    getattr(r, "start", lambda run: None)(RunInfo(sac_config, lc, hparams,
                                                 ag.metric_names(), place))
  guard = _Guarded(recorders)

  # jit follows its inputs: the state is created sharded and stays sharded.
  state = ag.init_members(seed_keys(lc.seeds()), hparams, sharding=place.sharding)
  fresh = LoopState(env_step=0, transition=agent_lib.empty_transition(
      place.num_local, obs_dim, act_dim), has_transition=False, eval_calls=0, wall_time=0.0)
  loop, history, stop = fresh, [], None
  train_envs = eval_envs = None
  try:
    point = ResumePoint(state, fresh)
    for r in recorders:
      point = getattr(r, "restore", lambda like: None)(point) or point
    if point.branched:  # another run's state: this run's hyperparameters from here on
      point = point._replace(state=ag.branch_state(point.state, state))
    elif point.state is not state:
      check_resumed_hparams(place.local(point.state.hparams), hparams, place.members)
    state, loop = point.state, point.loop
    del point

    if lc.overlap:
      act_fn, update_fn = ag.make_act(), ag.make_update()
    else:
      step_fn = ag.make_step()
    eval_act = ag.make_eval_act()
    train_envs = envs_lib.TrainEnvs(lc.env_id, place.num_local, lc.seed, lc.async_envs)
    eval_envs = envs_lib.EvalEnvs(lc.env_id, seeds, lc.eval_episodes, calls=loop.eval_calls)
    obs = train_envs.reset(place.select(_resume_seeds(lc, loop.env_step))
                           if loop.env_step else seeds)
    t0, wall0 = time.perf_counter(), loop.wall_time
    t_last, step_last = t0, loop.env_step
    updated = False
    while loop.env_step < lc.total_env_steps:
      t = loop.env_step
      updated = ag.ready_to_update(t)
      if lc.overlap:
        # Act from the params of the last update (waiting for it), then dispatch this
        # step's update without waiting: it runs while the envs step below.
        action, key, ok = act_fn(state, place.put(obs), loop.has_transition)
        action = place.local(action)
        state, metrics = update_fn(state, key, ok, place.put(loop.transition),
                                   loop.has_transition, updated)
      else:
        state, action, metrics = step_fn(state, place.put(loop.transition),
                                         loop.has_transition, place.put(obs), updated)
        action = place.local(action)
      next_obs, reward, terminated, _, obs_after = train_envs.step(action)
      loop = loop._replace(
          env_step=t + 1, transition=replay.Transition(obs, action, reward, next_obs,
                                                       terminated),
          has_transition=True, wall_time=wall0 + time.perf_counter() - t0)
      obs = obs_after

      if loop.env_step % lc.eval_every == 0 or loop.env_step == lc.total_env_steps:
        now = time.perf_counter()
        sps = (loop.env_step - step_last) / max(now - t_last, 1e-9)
        record = _evaluate(ag, eval_act, eval_envs, place, state, loop, sps,
                           place.local(metrics) if updated else {})
        loop = loop._replace(eval_calls=eval_envs.calls)
        history.append(record)
        guard.call("on_eval", record)
        t_last, step_last = time.perf_counter(), loop.env_step

      stops = [s for s in guard.call("after_step", loop,
                                     functools.partial(ResumePoint, state, loop))
               if s is not None]
      if stops:
        stop = next((s for s in stops if s.signum), stops[0])
        break
  finally:
    for e in (train_envs, eval_envs):
      if e is not None:
        e.close()
    guard.call("close", loop, loop.env_step >= lc.total_env_steps)
  if stop is not None and stop.signum:
    raise Interrupted(stop.signum, loop.env_step, stop.checkpointed)
  return history


def _evaluate(ag, eval_act, eval_envs, place, state, loop: LoopState, sps: float,
              train_metrics: dict) -> EvalRecord:
  """Evaluates this process's members; a diverged member acts zeros, its returns NaN."""
  diverged = np.asarray(place.local(state.diverged_at)).astype(np.int64)
  frozen = diverged >= 0

  def policy(o):
    a = np.array(place.local(eval_act(state.policy_params, state.q_params, place.put(o))))
    a[frozen] = 0.0
    return a

  returns = eval_envs.run(policy)
  returns[frozen] = np.nan
  metrics = {k: np.asarray(v) for k, v in train_metrics.items()}
  with np.errstate(all="ignore"):
    mine = np.stack([returns.mean(axis=1), diverged.astype(np.float64)], axis=1)
  every = parallel.allgather(mine)  # all members' means (a meeting point of processes)
  return EvalRecord(loop.env_step, returns, metrics, sps, place.members, diverged,
                    every[:, 0], every[:, 1].astype(np.int64), loop.wall_time)

