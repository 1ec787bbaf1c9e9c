"""The host loop: collect, update, evaluate, log, checkpoint, resume.

One jitted device call per env step for all members (insert the last transition, G
gradient steps, next actions); the envs step on the host in between. Every `eval_every`
env steps (and at the end) each member's deterministic policy plays `eval_episodes`
episodes.

With `LoopConfig.run_dir` set, the loop also owns the run directory (see sac_jax.rundir):
metrics.csv rows after every evaluation, curves.png redrawn, summary.json, and orbax
checkpoints every `checkpoint_every` env steps, at the end, and on SIGINT/SIGTERM. A run
with a checkpoint in its directory resumes from the latest one: the TrainState (params,
optimizer states, replay buffers, PRNG keys, counters) and the last transition not yet
stored come back exactly; the training episodes in flight at the kill restart from a fresh
reset; metrics.csv is cut back to the checkpoint's env step, so no evaluation row is lost
or doubled.

Members may be a sweep (LoopConfig.member_columns with a `setting` column, member_seeds
shared across settings): metrics.csv then carries the labels, curves.png draws one curve per
setting and summary.json ranks the settings. With more than one local device
(LoopConfig.num_devices, default all) the stacked state and every per-step input are placed
with the member axis sharded over a 1-D mesh (sac_jax.parallel); the jitted step follows.

Several processes (after `jax.distributed.initialize`, see sac_jax.parallel): the mesh spans
all processes' devices and every process runs this same loop in lockstep over the same
global state, but steps only the envs of its own block of members (`Placement.members`),
feeds them as process-local data, and evaluates only them. Each process appends its
members' rows to its own file `processes/metrics.<p>.csv`; at every evaluation the
processes meet (an allgather of the evaluation means), process 0 merges the files into
metrics.csv and draws curves.png, and they meet again before going on. Checkpoints are
orbax's multi-process ones (each process writes its shards; the run directory must be on
a filesystem all processes see). SIGINT/SIGTERM is agreed on every `SIGNAL_SYNC_EVERY` env
steps, so all processes checkpoint at the same step.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import numpy as np

from sac_jax import agent as agent_lib
from sac_jax import checkpoint as checkpoint_lib
from sac_jax import envs as envs_lib
from sac_jax import parallel
from sac_jax import replay
from sac_jax import rundir

# With several processes, a SIGINT/SIGTERM received by any of them is acted on by all at
# the next env step that is a multiple of this (a tiny allgather; with one process, at once).
SIGNAL_SYNC_EVERY = 100


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  env_id: str
  num_members: int = 1
  seed: int = 0
  total_env_steps: int = 100_000   # per member
  eval_every: int = 1000
  eval_episodes: int = 10
  async_envs: bool = False
  run_dir: str | None = None       # None: no files, no checkpoints, no resume
  checkpoint_every: int = 0        # env steps between checkpoints; 0: only at the end
  max_to_keep: int = 2             # checkpoints kept
  log_every_s: float = 5.0         # progress line period; <= 0: no progress lines
  title: str = ""                  # for the plot and progress lines
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
  returns: np.ndarray                  # [m, eval_episodes], m = len(members)
  train_metrics: dict[str, np.ndarray]  # name -> [m], from the last update call
  sps: float                            # env steps per second per member since last eval
  members: range                        # the global member index of each row


class Interrupted(Exception):
  """SIGINT/SIGTERM arrived; a checkpoint at `env_step` was written (with a run_dir)."""

  def __init__(self, signum: int, env_step: int, checkpointed: bool):
    self.signum, self.env_step, self.checkpointed = signum, env_step, checkpointed
    super().__init__(f"{signal.Signals(signum).name} at env step {env_step}")


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


def devices_for(lc: LoopConfig) -> list:
  """The devices the members are spread over; raises ValueError if they do not divide."""
  devs = parallel.member_devices(lc.num_devices)
  parallel.check_divisible(lc.num_members, len(devs))
  return devs


def completed_steps(run_dir: str) -> int:
  """Env steps of the latest checkpoint in `run_dir` (0 when there is none)."""
  path = os.path.join(run_dir, rundir.CHECKPOINTS)
  if not os.path.isdir(path):
    return 0
  ckpt = checkpoint_lib.Checkpointer(path)
  try:
    return ckpt.latest_step() or 0
  finally:
    ckpt.close()


def metric_columns(hparam_names: Sequence[str], metric_names: Sequence[str],
                   extra: Sequence[str] = ()) -> list[str]:
  return (["env_step", "member", "seed", "eval_return", "eval_return_std",
           "eval_return_min", "eval_return_max", "eval_episodes"] + list(extra) +
          list(hparam_names) + [f"train_{n}" for n in metric_names] +
          ["sps", "wall_time"])


def _fmt_time(s: float) -> str:
  if not math.isfinite(s):
    return "?"
  s = int(round(s))
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


class _Signals:
  """SIGINT/SIGTERM set a flag the loop checks after each env step (main thread only).

  A second signal of the same kind falls back to the default action (kill now).
  """

  def __init__(self, enabled: bool):
    self.received: int | None = None
    self._old = {}
    if enabled and threading.current_thread() is threading.main_thread():
      for s in (signal.SIGINT, signal.SIGTERM):
        self._old[s] = signal.signal(s, self._handle)

  def _handle(self, signum, frame):
    self.received = signum
    signal.signal(signum, signal.SIG_DFL)
    print(f"\n{signal.Signals(signum).name} received: checkpointing after this step "
          "(send it again to kill now)", file=sys.stderr, flush=True)

  def restore(self):
    for s, h in self._old.items():
      signal.signal(s, h)


class _Outputs:
  """metrics.csv, curves.png, summary.json and checkpoints of one run directory.

  Every process appends its own members' rows to its part file (metrics.csv itself with
  one process); process 0 merges the parts into metrics.csv and alone writes curves.png
  and summary.json.
  """

  def __init__(self, lc: LoopConfig, hparams: agent_lib.HParams, metric_names: list[str],
               placement: parallel.Placement):
    self.lc = lc
    self.seeds = lc.seeds()
    self.members = placement.members
    self.primary = placement.is_primary
    self.dir = lc.run_dir
    os.makedirs(self.dir, exist_ok=True)
    # float32 values printed with float32's precision (0.01, not 0.009999999776).
    self.hparams = {k: np.array([float(f"{x:.7g}") for x in np.ravel(v)])
                    for k, v in hparams._asdict().items()}
    self.metric_names = metric_names
    extra = list(lc.member_columns[0]) if lc.member_columns else []
    columns = metric_columns(list(self.hparams), metric_names, extra)
    self.csv = rundir.MetricsCSV(self.dir, columns)
    self.num_processes = jax.process_count()
    self.parts = [self.csv]
    if self.num_processes > 1:
      os.makedirs(os.path.join(self.dir, rundir.PROCESSES), exist_ok=True)
      self.parts = [rundir.MetricsCSV(self.dir, columns, rundir.process_metrics(p))
                    for p in range(self.num_processes)]
    self.part = self.parts[jax.process_index()]
    self.ckpt = checkpoint_lib.Checkpointer(os.path.join(self.dir, rundir.CHECKPOINTS),
                                            lc.max_to_keep)

  def reset_to(self, env_step: int) -> int:
    """Keeps the rows up to `env_step` (the checkpoint's; -1: none). Returns rows kept.

    With several processes each part file is rebuilt from metrics.csv (which, merged before
    every checkpoint, holds every row up to it), so resuming with another process count
    works; stale part files of processes no longer running are never read.
    """
    if self.num_processes == 1:
      return self.csv.reset_to(env_step)
    mine = [r for r in self.csv.read(check_header=True)
            if int(r["env_step"]) <= env_step and int(r["member"]) in self.members]
    self.part.write(mine)
    parallel.barrier("sac_jax.outputs.reset")  # everyone has read metrics.csv
    kept = self.csv.reset_to(env_step) if self.primary else 0
    parallel.barrier("sac_jax.outputs.reset_done")
    return kept

  def append(self, record: EvalRecord, wall_time: float) -> None:
    self.part.append(self.rows(record, wall_time))

  def merge(self, env_step: int) -> None:
    """Process 0: metrics.csv from every process's part (call when all have appended)."""
    if self.num_processes == 1 or not self.primary:
      return
    rows = [r for part in self.parts for r in part.read()
            if int(r["env_step"]) <= env_step]
    rows.sort(key=lambda r: (int(r["env_step"]), int(r["member"])))
    self.csv.write(rows)

  def rows(self, record: EvalRecord, wall_time: float) -> list[dict]:
    out = []
    for k, i in enumerate(record.members):
      r = record.returns[k]
      row = dict(env_step=record.env_step, member=i, seed=self.seeds[i],
                 eval_return=float(r.mean()), eval_return_std=float(r.std()),
                 eval_return_min=float(r.min()), eval_return_max=float(r.max()),
                 eval_episodes=len(r), sps=round(record.sps, 2),
                 wall_time=round(wall_time, 2))
      if self.lc.member_columns:
        row.update(self.lc.member_columns[i])
      row.update({k: float(v[i]) for k, v in self.hparams.items()})
      row.update({f"train_{n}": float(np.asarray(record.train_metrics[n])[k])
                  for n in self.metric_names if n in record.train_metrics})
      out.append(row)
    return out

  def plot(self):
    if not self.primary:
      return
    try:
      from experiments import plot as plot_lib  # matplotlib (Agg) only when writing files
    except ImportError:  # the library installed without experiments/
      return
    labels = None
    if self.lc.member_columns and "setting" not in self.lc.member_columns[0]:
      labels = [f"{i}: " + ", ".join(f"{k}={v}" for k, v in c.items())
                for i, c in enumerate(self.lc.member_columns)]
    plot_lib.plot_curves(self.csv.path, os.path.join(self.dir, rundir.CURVES),
                         title=self.lc.title or self.lc.env_id, labels=labels)

  def summary(self, env_step: int, wall_time: float, sps: float, complete: bool
              ) -> dict | None:
    """Process 0 writes and returns summary.json; other processes return None."""
    if not self.primary:
      return None
    rows = self.csv.read()
    per_member = []
    for i in range(self.lc.num_members):
      mine = [(int(r["env_step"]), float(r["eval_return"])) for r in rows
              if int(r["member"]) == i]
      final = mine[-1] if mine else (None, None)
      best = max(mine, key=lambda x: x[1]) if mine else (None, None)
      entry = dict(member=i, seed=self.seeds[i], final_return=final[1],
                   final_env_step=final[0], best_return=best[1], best_env_step=best[0])
      if self.lc.member_columns:
        entry.update(self.lc.member_columns[i])
      per_member.append(entry)
    finals = [m["final_return"] for m in per_member if m["final_return"] is not None]
    summary = dict(
        env_id=self.lc.env_id, num_members=self.lc.num_members,
        env_steps=env_step, total_env_steps=self.lc.total_env_steps, complete=complete,
        wall_time_s=round(wall_time, 2), sps_per_member=round(sps, 2),
        final_return_mean=float(np.mean(finals)) if finals else None,
        final_return_min=float(np.min(finals)) if finals else None,
        final_return_max=float(np.max(finals)) if finals else None,
        members=per_member)
    if self.lc.member_columns and "setting" in self.lc.member_columns[0]:
      summary["settings"] = rank_settings(per_member)
    rundir.write_json(os.path.join(self.dir, rundir.SUMMARY), summary)
    return summary


def rank_settings(per_member: Sequence[dict]) -> list[dict]:
  """Settings ranked by their mean final return over seeds (best first).

  Each entry: rank, setting, the members and seeds in it, mean/std/min/max of their final
  returns, and the mean of their best returns. Settings without a return yet go last.
  """
  groups: dict[str, list[dict]] = {}
  for m in per_member:
    groups.setdefault(m["setting"], []).append(m)
  out = []
  for name, ms in groups.items():
    finals = [m["final_return"] for m in ms if m["final_return"] is not None]
    bests = [m["best_return"] for m in ms if m["best_return"] is not None]
    out.append(dict(
        setting=name, members=[m["member"] for m in ms], seeds=[m["seed"] for m in ms],
        final_return_mean=float(np.mean(finals)) if finals else None,
        final_return_std=float(np.std(finals)) if finals else None,
        final_return_min=float(np.min(finals)) if finals else None,
        final_return_max=float(np.max(finals)) if finals else None,
        best_return_mean=float(np.mean(bests)) if bests else None))
  out.sort(key=lambda e: (e["final_return_mean"] is None,
                          -(e["final_return_mean"] or 0.0)))
  for r, e in enumerate(out, 1):
    e["rank"] = r
  return out


def train(sac_config: agent_lib.SACConfig, loop_config: LoopConfig,
          hparams: agent_lib.HParams | None = None,
          on_eval: Callable[[EvalRecord], None] | None = None) -> list[EvalRecord]:
  """Trains M members (resuming from `run_dir`'s latest checkpoint if there is one).

  Returns one EvalRecord per evaluation made by this call (of this process's members).
  Raises `Interrupted` after writing a checkpoint when SIGINT or SIGTERM arrives (only
  with a run_dir). With several processes every process calls this with the same
  arguments.
  """
  lc = loop_config
  obs_dim, act_dim = envs_lib.env_dims(lc.env_id)
  ag = agent_lib.Agent(sac_config, obs_dim, act_dim)
  place = parallel.Placement(lc.num_members, devices_for(lc))
  seeds = place.select(lc.seeds())  # this process's members' seeds
  if hparams is None:
    hparams = agent_lib.HParams.from_config(sac_config).stack(lc.num_members)
  # jit follows its inputs: the state is created sharded and stays sharded.
  state = ag.init_members(seed_keys(lc.seeds()), hparams, sharding=place.sharding)
  transition = agent_lib.empty_transition(place.num_local, obs_dim, act_dim)
  has_transition = False
  start, eval_calls, wall_before = 0, 0, 0.0

  out = None
  if lc.run_dir is not None:
    out = _Outputs(lc, hparams, ag.metric_names(), place)
    step0 = out.ckpt.latest_step()
    if step0 is not None:
      tree, host = out.ckpt.restore(step0, {"train": state, "pending": place.put(transition)})
      state = tree["train"]
      transition = place.local(tree["pending"])
      has_transition = bool(host["has_pending"])
      start, eval_calls = int(step0), int(host["eval_calls"])
      wall_before = float(host["wall_time"])
      kept = out.reset_to(start)
      _say(lc, f"resumed from the checkpoint at env step {start} "
               f"({kept} metrics rows kept; training episodes in flight restart)")
    else:
      out.reset_to(-1)

  step_fn = ag.make_step()
  eval_act = ag.make_eval_act()
  train_envs = envs_lib.TrainEnvs(lc.env_id, place.num_local, lc.seed, lc.async_envs)
  eval_envs = envs_lib.EvalEnvs(lc.env_id, seeds, lc.eval_episodes, calls=eval_calls)
  signals = _Signals(enabled=out is not None)

  history: list[EvalRecord] = []
  metrics: dict = {}
  t = start
  t0 = time.perf_counter()
  t_last, step_last = t0, t
  log_last, rate_t0, rate_step0 = t0, None, t
  latest = None  # (env_step, per-member means of all members)

  def wall() -> float:
    return wall_before + time.perf_counter() - t0

  def save_checkpoint():
    out.ckpt.save(t, {"train": state, "pending": place.put(transition)},
                  dict(eval_calls=eval_envs.calls, wall_time=wall(),
                       has_pending=has_transition, env_step=t))

  def stop_signal() -> int | None:
    """The signal every process acts on now (one process: its own, at once)."""
    if not place.multi_process:
      return signals.received
    if t % SIGNAL_SYNC_EVERY and t != lc.total_env_steps:
      return None
    got = parallel.allgather(np.array([signals.received or 0], np.int32))
    return int(got.max()) or None

  try:
    obs = train_envs.reset(place.select(_resume_seeds(lc, start)) if start else seeds)
    while t < lc.total_env_steps:
      state, action, metrics = step_fn(state, place.put(transition), has_transition,
                                       place.put(obs), ag.ready_to_update(t))
      action = place.local(action)
      next_obs, reward, terminated, _, obs_after = train_envs.step(action)
      transition = replay.Transition(obs, action, reward, next_obs, terminated)
      has_transition = True
      obs = obs_after
      t += 1
      if rate_t0 is None:  # measure speed after the first (compiling) step
        rate_t0, rate_step0 = time.perf_counter(), t

      if t % lc.eval_every == 0 or t == lc.total_env_steps:
        now = time.perf_counter()
        sps = (t - step_last) / max(now - t_last, 1e-9)
        returns = eval_envs.run(lambda o: place.local(
            eval_act(state.policy_params, state.q_params, place.put(o))))
        record = EvalRecord(t, returns, place.local(metrics), sps, place.members)
        history.append(record)
        if out is not None:
          out.append(record, wall())
        # All members' means; with several processes also the point where every process
        # has written its rows, so process 0 can merge them.
        means = parallel.allgather(returns.mean(axis=1))
        latest = (t, means)
        if out is not None:
          out.merge(t)
          out.plot()
          parallel.barrier("sac_jax.loop.merged")  # no part file grows during the merge
        if on_eval is not None:
          on_eval(record)
        _say(lc, f"eval @ {t}: " + _spread(means) + "  per member: " +
             " ".join(f"{x:.1f}" for x in means))
        t_last, step_last = time.perf_counter(), t

      stop = stop_signal() if out is not None else None
      if out is not None and (t == lc.total_env_steps or stop or
                              (lc.checkpoint_every and t % lc.checkpoint_every == 0)):
        save_checkpoint()
        if t < lc.total_env_steps:
          out.summary(t, wall(), _rate(rate_t0, rate_step0, t), complete=False)
      if stop:
        raise Interrupted(stop, t, out is not None)

      now = time.perf_counter()
      if lc.log_every_s > 0 and now - log_last >= lc.log_every_s and t > rate_step0:
        log_last = now
        rate = _rate(rate_t0, rate_step0, t)
        eta = (lc.total_env_steps - t) / rate if rate > 0 else float("inf")
        ev = f"  last eval @ {latest[0]}: {_spread(latest[1])}" if latest else ""
        _say(lc, f"step {t}/{lc.total_env_steps} ({100 * t / lc.total_env_steps:.0f}%)"
                 f"  {rate:.0f} sps  eta {_fmt_time(eta)}  elapsed {_fmt_time(wall())}{ev}")

    if out is not None:
      rate = _rate(rate_t0, rate_step0, t)
      s = out.summary(t, wall(), rate, complete=True)
      out.plot()
      if s is not None:
        _say(lc, f"done: {t} env steps per member in {_fmt_time(s['wall_time_s'])}; "
                 f"final return mean {_num(s['final_return_mean'])}; "
                 f"curves: {os.path.join(lc.run_dir, rundir.CURVES)}")
  finally:
    signals.restore()
    train_envs.close()
    eval_envs.close()
    if out is not None:
      out.ckpt.close()
  return history


def finalize(sac_config: agent_lib.SACConfig, loop_config: LoopConfig) -> dict | None:
  """For a complete run: rewrites summary.json and curves.png from metrics.csv.

  Returns the summary (None on processes other than 0, which write nothing).
  """
  lc = loop_config
  obs_dim, act_dim = envs_lib.env_dims(lc.env_id)
  ag = agent_lib.Agent(sac_config, obs_dim, act_dim)
  hp = agent_lib.HParams.from_config(sac_config).stack(lc.num_members)
  place = parallel.Placement(lc.num_members, devices_for(lc))
  out = _Outputs(lc, hp, ag.metric_names(), place)
  try:
    step = out.ckpt.latest_step() or 0
    host = {}
    if step:
      host = out.ckpt.restore_host(step)
    if not place.is_primary:
      return None
    out.csv.reset_to(step)
    wall = float(host.get("wall_time", 0.0))
    rows = out.csv.read()
    sps = float(np.mean([float(r["sps"]) for r in rows])) if rows else 0.0
    s = out.summary(step, wall, sps, complete=step >= lc.total_env_steps)
    out.plot()
    return s
  finally:
    out.ckpt.close()


def _num(x) -> str:
  return "n/a" if x is None else f"{x:.1f}"


def _rate(t0, step0, t) -> float:
  if t0 is None:
    return 0.0
  return (t - step0) / max(time.perf_counter() - t0, 1e-9)


def _spread(means: np.ndarray) -> str:
  return (f"mean {np.mean(means):.1f} ± {np.std(means):.1f} "
          f"[min {np.min(means):.1f}, max {np.max(means):.1f}] over {len(means)}")


def _say(lc: LoopConfig, msg: str) -> None:
  if lc.log_every_s > 0 and jax.process_index() == 0:
    tag = lc.title or lc.env_id
    print(f"[{tag}] {msg}", flush=True)
