"""Recorders: what the host loop (sac_jax.loop) hands its events to.

    RunDirectory   the run directory (sac_jax.rundir): metrics.csv rows after every
                   evaluation (with several processes each appends to its part file and
                   process 0 merges), curves.png redrawn (at most every `plot_every_s`
                   seconds, and at every checkpoint and the end), summary.json, orbax checkpoints
                   every `checkpoint_every` env steps, at the end and on SIGINT/SIGTERM
                   (agreed on by all processes every SIGNAL_SYNC_EVERY env steps), and the
                   resume: the latest readable checkpoint, metrics.csv cut back to its step;
                   a branch's start: another run's checkpoint (read-only) and its rows up
                   to that step.
    Progress       the lines on stdout: evaluations, progress every `every_s` seconds, the
                   end; a member that diverged is announced once (stderr), also when quiet.
    TensorBoard    per-member evaluation returns and training metrics, per-setting means
                   (tensorboardX, the `tensorboard` extra).

`defaults(loop_config)` is what `train` uses without `recorders=`. Your own recorder needs
only the methods it uses (see sac_jax.protocol.Recorder); subclass `Recorder` for no-op
defaults.

Reporting never stops training: a failure writing curves.png or summary.json (full disk, a
bad font) is warned about once per kind and training goes on; checkpoints are what must not
be lost, so a failing checkpoint save raises (the loop warns and goes on; the previous
checkpoint stays the resume point).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
import warnings
from typing import Callable, Sequence

import jax
import numpy as np

from sac_jax import agent as agent_lib
from sac_jax import checkpoint as checkpoint_lib
from sac_jax import learners
from sac_jax import parallel
from sac_jax import replay as replay_lib
from sac_jax import rundir
from sac_jax.protocol import (EvalRecord, LoopConfig, LoopState, ResumePoint, RunInfo,
                              Stop, devices_for)

# With several processes, a SIGINT/SIGTERM received by any of them is acted on by all at
# the next env step that is a multiple of this (a tiny allgather; with one process, at once).
SIGNAL_SYNC_EVERY = 100
DIVERGED_NOTE = ("non-finite loss, parameter or action; frozen: no more updates, zero "
                 "actions, evaluations recorded as missing")


class Recorder:
  """No-op defaults for every method of the protocol (sac_jax.protocol.Recorder)."""

  def start(self, run: RunInfo) -> None:
    pass

  def restore(self, like: ResumePoint) -> ResumePoint | None:
    return None

  def on_eval(self, record: EvalRecord) -> None:
    pass

  def after_step(self, loop: LoopState, snapshot: Callable[[], ResumePoint]
                 ) -> Stop | None:
    return None

  def close(self, loop: LoopState, complete: bool) -> None:
    pass


class ReportingWarning(UserWarning):
  """A report (curves.png, summary.json, an event file) could not be written."""


def defaults(lc: LoopConfig) -> list:
  """The recorders `train` uses without `recorders=`: the run directory when
  `lc.run_dir` is set, and the progress line (quiet, divergence notices only, when
  `lc.log_every_s <= 0`)."""
  out: list = []
  tag = lc.title or lc.env_id
  if lc.run_dir is not None:
    out.append(RunDirectory(lc.run_dir, checkpoint_every=lc.checkpoint_every,
                            max_to_keep=lc.max_to_keep, keep_every=lc.keep_every,
                            title=tag,
                            verbose=lc.log_every_s > 0, branch_from=lc.branch_from,
                            branch_step=lc.branch_step))
  out.append(Progress(tag, every_s=lc.log_every_s,
                      note=(f"curves: {os.path.join(lc.run_dir, rundir.CURVES)}"
                            if lc.run_dir is not None else "")))
  return out


def say(tag: str, msg: str, file=None) -> None:
  """A line `[tag] msg` from process 0 only."""
  if jax.process_index() == 0:
    print(f"[{tag}] {msg}", file=file or sys.stdout, flush=True)


def fmt_time(s: float) -> str:
  if not math.isfinite(s):
    return "?"
  s = int(round(s))
  h, rem = divmod(s, 3600)
  m, sec = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def spread(means: np.ndarray) -> str:
  """mean ± std [min, max] over the members with a return; diverged ones are counted."""
  means = np.asarray(means, np.float64)
  ok = means[np.isfinite(means)]
  out = (f"mean {np.mean(ok):.1f} ± {np.std(ok):.1f} [min {np.min(ok):.1f}, max "
         f"{np.max(ok):.1f}] over {len(ok)}") if len(ok) else "no finite return"
  lost = len(means) - len(ok)
  return out + (f" ({lost} of {len(means)} diverged, not in the mean)" if lost else "")


def _num(x) -> str:
  return "n/a" if x is None else f"{x:.1f}"


class _Once:
  """Runs report functions; a failure is warned about once per (kind, error type)."""

  def __init__(self):
    self.seen: set = set()

  def __call__(self, kind: str, fn: Callable, *args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - reporting never stops training
      key = (kind, type(e))
      if key not in self.seen:
        self.seen.add(key)
        warnings.warn(f"could not write {kind} (training goes on; warned once per kind): "
                      f"{type(e).__name__}: {e}", ReportingWarning, stacklevel=3)
      return None


# ---------------------------------------------------------------- progress line
class Progress(Recorder):
  """The progress lines on stdout (process 0): one per evaluation, one every `every_s`
  seconds, one at the end (with `note` appended). `every_s <= 0`: none of these, but a
  member that diverged is still announced (once, on stderr)."""

  def __init__(self, title: str, every_s: float = 5.0, note: str = ""):
    self.tag, self.every_s, self.note = title, every_s, note

  def start(self, run: RunInfo) -> None:
    self.total = run.loop_config.total_env_steps
    self.columns = run.loop_config.member_columns
    self.announced: set[int] = set()
    self.latest: EvalRecord | None = None
    self.rate_t0 = self.rate_step0 = None
    self.log_last = time.perf_counter()

  def on_eval(self, record: EvalRecord) -> None:
    self.latest = record
    for i in np.flatnonzero(record.all_diverged_at >= 0):
      if int(i) not in self.announced:
        self.announced.add(int(i))
        label = ""
        if self.columns and "setting" in self.columns[i]:
          label = f" ({self.columns[i]['setting']})"
        say(self.tag, f"member {i}{label} diverged at env step "
                      f"{record.all_diverged_at[i]}: {DIVERGED_NOTE}", file=sys.stderr)
    if self.every_s > 0:
      say(self.tag, f"eval @ {record.env_step}: " + spread(record.all_means) +
          "  per member: " + " ".join("div" if not np.isfinite(x) else f"{x:.1f}"
                                      for x in record.all_means))

  def rate(self, t: int) -> float:
    if self.rate_t0 is None:
      return 0.0
    return (t - self.rate_step0) / max(time.perf_counter() - self.rate_t0, 1e-9)

  def after_step(self, loop: LoopState, snapshot) -> None:
    t = loop.env_step
    if self.rate_t0 is None:  # measure speed after the first (compiling) step
      self.rate_t0, self.rate_step0 = time.perf_counter(), t
    now = time.perf_counter()
    if self.every_s > 0 and now - self.log_last >= self.every_s and t > self.rate_step0:
      self.log_last = now
      rate = self.rate(t)
      eta = (self.total - t) / rate if rate > 0 else float("inf")
      ev = (f"  last eval @ {self.latest.env_step}: {spread(self.latest.all_means)}"
            if self.latest else "")
      say(self.tag, f"step {t}/{self.total} ({100 * t / self.total:.0f}%)  {rate:.0f} sps"
                    f"  eta {fmt_time(eta)}  elapsed {fmt_time(loop.wall_time)}{ev}")

  def close(self, loop: LoopState, complete: bool) -> None:
    if not (complete and self.every_s > 0):
      return
    final = "n/a"
    if self.latest is not None:
      means = self.latest.all_means
      ok = means[np.isfinite(means)]
      final = _num(float(np.mean(ok)) if len(ok) else None)
      if len(ok) < len(means):
        final += f" over the {len(ok)} of {len(means)} members that did not diverge"
    say(self.tag, f"done: {loop.env_step} env steps per member in "
                  f"{fmt_time(loop.wall_time)}; final return mean {final}"
                  + (f"; {self.note}" if self.note else ""))


# ---------------------------------------------------------------- signals
class _Signals:
  """SIGINT/SIGTERM set a flag the recorder checks after each env step (main thread only).

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
    self._old = {}


# ---------------------------------------------------------------- run directory
def metric_columns(hparam_names: Sequence[str], metric_names: Sequence[str],
                   extra: Sequence[str] = ()) -> list[str]:
  return (["env_step", "member", "seed", "eval_return", "eval_return_std",
           "eval_return_min", "eval_return_max", "eval_episodes", "diverged_at_step"] +
          list(extra) + list(hparam_names) + [f"train_{n}" for n in metric_names] +
          ["sps", "wall_time"])


def _cell(row: dict, key: str) -> float | None:
  v = row.get(key)
  return None if v in (None, "") else float(v)


class RunDirectory(Recorder):
  """metrics.csv, curves.png, summary.json and checkpoints of one run directory, and the
  SIGINT/SIGTERM handling (a checkpoint, then a Stop).

  Every process appends its own members' rows to its part file (metrics.csv itself with
  one process); process 0 merges the parts into metrics.csv and alone writes curves.png
  and summary.json.

  With `branch_from` (another run's directory) and `branch_step`, a run directory that
  holds no checkpoint yet starts from the source's checkpoint at that step (read-only:
  the source may still be training) and from the source's metrics.csv rows up to it;
  once it has a checkpoint of its own it resumes from that, as any run does.
  """

  # Redrawing curves.png re-reads metrics.csv and costs a few tenths of a second, which
  # grows with the run; at the paper's protocol (an evaluation every 1000 steps of a fast
  # configuration) drawing at every evaluation cost more than the evaluations themselves.
  PLOT_EVERY_S = 30.0

  def __init__(self, run_dir: str, checkpoint_every: int = 0, max_to_keep: int = 2,
               title: str = "", verbose: bool = True, handle_signals: bool = True,
               plot: bool = True, plot_every_s: float = PLOT_EVERY_S,
               branch_from: str | None = None, branch_step: int | None = None,
               keep_every: int = 0):
    if (branch_from is None) != (branch_step is None):
      raise ValueError(f"branch_from={branch_from!r}, branch_step={branch_step!r}: give "
                       "both (the source run's directory and its checkpoint's env step) "
                       "or neither")
    if branch_from is not None and os.path.abspath(branch_from) == os.path.abspath(run_dir):
      raise ValueError(f"branch_from={branch_from!r} is this run's own run_dir; a branch "
                       "writes to a new run_dir")
    self.dir = run_dir
    self.branch_from, self.branch_step = branch_from, branch_step
    self.checkpoint_every, self.max_to_keep = checkpoint_every, max_to_keep
    self.keep_every = keep_every
    self.title, self.verbose = title, verbose
    self.handle_signals, self.draw = handle_signals, plot
    self.plot_every_s = plot_every_s
    self.drawn_at = -math.inf   # perf_counter of the last redraw
    self.stale = False          # evaluations not yet drawn
    self.report = _Once()
    self.ckpt = None
    self.signals = None

  # ------------------------------------------------------------ protocol
  def start(self, run: RunInfo) -> None:
    lc = self.lc = run.loop_config
    self.place = run.placement
    self.seeds = lc.seeds()
    self.members = run.placement.members
    self.primary = run.placement.is_primary
    self.tag = self.title or lc.title or lc.env_id
    os.makedirs(self.dir, exist_ok=True)
    # float32 values printed with float32's precision (0.01, not 0.009999999776).
    self.hparams = {k: np.array([float(f"{x:.7g}") for x in np.ravel(v)])
                    for k, v in run.hparams._asdict().items()}
    self.metric_names = list(run.metric_names)
    extra = list(lc.member_columns[0]) if lc.member_columns else []
    columns = metric_columns(list(self.hparams), self.metric_names, extra)
    self.csv = rundir.MetricsCSV(self.dir, columns)
    self.num_processes = jax.process_count()
    self.parts = [self.csv]
    if self.num_processes > 1:
      os.makedirs(os.path.join(self.dir, rundir.PROCESSES), exist_ok=True)
      self.parts = [rundir.MetricsCSV(self.dir, columns, rundir.process_metrics(p))
                    for p in range(self.num_processes)]
    self.part = self.parts[jax.process_index()]
    self.ckpt = checkpoint_lib.Checkpointer(os.path.join(self.dir, rundir.CHECKPOINTS),
                                            self.max_to_keep,
                                            keep_every=self.keep_every)
    self.signals = _Signals(self.handle_signals)
    self.saved_step: int | None = None
    self.rate_t0 = self.rate_step0 = None

  def restore(self, like: ResumePoint) -> ResumePoint | None:
    got = self.ckpt.restore_latest(self._tree(like))
    if got is None and self.branch_from is not None:
      return self._branch(like)
    if got is None:
      self.reset_to(-1)
      return None
    step, tree, host = got
    loop = LoopState.from_host(host, self.place.local(tree["pending"]))
    kept = self.reset_to(step)
    self.saved_step = step
    if self.verbose:
      say(self.tag, f"resumed from the checkpoint at env step {step} ({kept} metrics rows "
                    "kept; training episodes in flight restart)")
    return ResumePoint(tree["train"], loop)

  def _branch(self, like: ResumePoint) -> ResumePoint:
    """The source's state at `branch_step` and its metrics rows up to it."""
    src, step = self.branch_from, int(self.branch_step)
    ckpt = checkpoint_lib.Checkpointer(os.path.join(src, rundir.CHECKPOINTS),
                                       read_only=True)
    try:
      steps = ckpt.all_steps()
      if step not in steps:
        raise ValueError(f"branch_step={step}: {src} has no checkpoint at that env step; "
                         "it has " + (", ".join(map(str, steps)) or "none"))
      like_tree, moved = _with_stored_replay(self._tree(like), ckpt.stored_shapes(step))
      try:
        ckpt.check_structure(step, like_tree)
      except checkpoint_lib.IncompatibleCheckpoint as e:
        raise checkpoint_lib.IncompatibleCheckpoint(
            f"cannot branch from {src} at env step {step}: {e} (or its state-defining "
            "settings differ from this run's)") from None
      tree, host = ckpt.restore(step, like_tree)
    finally:
      ckpt.close()
    rows, dropped = self.csv.rows_for_branch(src, step)
    if self.primary:
      self.csv.write(rows)
    parallel.barrier("sac_jax.rundir.branched")  # metrics.csv holds the source's rows
    kept = self.reset_to(step)
    loop = LoopState.from_host(host, self.place.local(tree["pending"]))
    if self.verbose:
      say(self.tag, f"branched from {src} at env step {step} ({kept} metrics rows copied"
                    + (f", without the source's {', '.join(dropped)}, which this run does "
                       "not record" if dropped else "")
                    + "; this run's settings from here on"
                    + (f"; its replay of {moved[0]} slots moved into {moved[1]}, the newest "
                       "transitions kept" if moved else "")
                    + "; training episodes in flight restart)")
    return ResumePoint(tree["train"], loop, branched=True)

  def on_eval(self, record: EvalRecord) -> None:
    self.part.append(self.rows(record))
    if self.num_processes > 1:
      parallel.barrier("sac_jax.rundir.appended")  # every part has this evaluation's rows
      self.merge(record.env_step)
    self.stale = True
    if time.perf_counter() - self.drawn_at >= self.plot_every_s:
      self.redraw()
    parallel.barrier("sac_jax.rundir.merged")  # no part file grows during the merge

  def after_step(self, loop: LoopState, snapshot: Callable[[], ResumePoint]
                 ) -> Stop | None:
    t = loop.env_step
    if self.rate_t0 is None:
      self.rate_t0, self.rate_step0 = time.perf_counter(), t
    stop = self._stop_signal(t)
    total = self.lc.total_env_steps
    if not (t == total or stop or (self.checkpoint_every and t % self.checkpoint_every == 0)):
      return None
    checkpointed = False
    try:
      self.save(snapshot())
      checkpointed = True
    except Exception as e:  # noqa: BLE001
      if not stop:
        raise
      warnings.warn(f"checkpoint at env step {t} failed: {type(e).__name__}: {e}",
                    ReportingWarning, stacklevel=2)
    if t < total:
      self.report("summary.json", self.summary, t, loop.wall_time, self.rate(t),
                  complete=False)
      self.redraw()  # the figure matches the checkpoint (and the files a stop leaves)
    return Stop(stop, checkpointed, "signal") if stop else None

  def close(self, loop: LoopState, complete: bool) -> None:
    try:
      if complete:
        self.report("summary.json", self.summary, loop.env_step, loop.wall_time,
                    self.rate(loop.env_step), complete=True)
      self.redraw()
    finally:
      if self.signals is not None:
        self.signals.restore()
      if self.ckpt is not None:
        self.ckpt.close()

  # ------------------------------------------------------------ checkpoints
  def _tree(self, point: ResumePoint) -> dict:
    return {"train": point.state, "pending": self.place.put(point.loop.transition)}

  def save(self, point: ResumePoint) -> None:
    self.ckpt.save(point.loop.env_step, self._tree(point), point.loop.host())
    self.saved_step = point.loop.env_step

  def _stop_signal(self, t: int) -> int | None:
    """The signal every process acts on now (one process: its own, at once)."""
    if not self.place.multi_process:
      return self.signals.received
    if t % SIGNAL_SYNC_EVERY and t != self.lc.total_env_steps:
      return None
    got = parallel.allgather(np.array([self.signals.received or 0], np.int32))
    return int(got.max()) or None

  def rate(self, t: int) -> float:
    if self.rate_t0 is None:
      return 0.0
    return (t - self.rate_step0) / max(time.perf_counter() - self.rate_t0, 1e-9)

  # ------------------------------------------------------------ metrics.csv
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

  def merge(self, env_step: int) -> None:
    """Process 0: metrics.csv from every process's part (call when all have appended)."""
    if self.num_processes == 1 or not self.primary:
      return
    rows = [r for part in self.parts for r in part.read()
            if int(r["env_step"]) <= env_step]
    rows.sort(key=lambda r: (int(r["env_step"]), int(r["member"])))
    self.csv.write(rows)

  def rows(self, record: EvalRecord) -> list[dict]:
    """One row per member; a diverged member's returns and training metrics are empty
    (missing), its `diverged_at_step` set; training metrics are empty before the first
    update."""
    out = []
    for k, i in enumerate(record.members):
      r = record.returns[k]
      div = int(record.diverged_at[k])
      frozen = div >= 0
      row = dict(env_step=record.env_step, member=i, seed=self.seeds[i],
                 eval_return=None if frozen else float(r.mean()),
                 eval_return_std=None if frozen else float(r.std()),
                 eval_return_min=None if frozen else float(r.min()),
                 eval_return_max=None if frozen else float(r.max()),
                 eval_episodes=len(r), diverged_at_step=div if frozen else None,
                 sps=round(record.sps, 2), wall_time=round(record.wall_time, 2))
      if self.lc.member_columns:
        row.update(self.lc.member_columns[i])
      row.update({k2: float(v[i]) for k2, v in self.hparams.items()})
      if not frozen:
        row.update({f"train_{n}": float(np.asarray(record.train_metrics[n])[k])
                    for n in self.metric_names if n in record.train_metrics})
      out.append(row)
    return out

  # ------------------------------------------------------------ curves, summary
  def redraw(self) -> None:
    """curves.png from metrics.csv, if an evaluation has not been drawn yet."""
    if self.draw and self.stale:
      self.stale = False
      self.drawn_at = time.perf_counter()
      self.report("curves.png", self.plot)

  def plot(self) -> None:
    if not self.primary:
      return
    from sac_jax import plotting  # matplotlib (Agg) only when drawing
    labels = None
    if self.lc.member_columns and "setting" not in self.lc.member_columns[0]:
      labels = [f"{i}: " + ", ".join(f"{k}={v}" for k, v in c.items())
                for i, c in enumerate(self.lc.member_columns)]
    mark = None if self.branch_from is None else (
        self.branch_step,
        f"branched from {os.path.basename(os.path.normpath(self.branch_from))}")
    plotting.plot_curves(self.csv.path, os.path.join(self.dir, rundir.CURVES),
                         title=self.tag, labels=labels, mark=mark)

  def summary(self, env_step: int, wall_time: float, sps: float, complete: bool
              ) -> dict | None:
    """Process 0 writes and returns summary.json; other processes return None."""
    if not self.primary:
      return None
    s = build_summary(self.lc, self.csv.read(), env_step, wall_time, sps, complete)
    rundir.write_json(os.path.join(self.dir, rundir.SUMMARY), s)
    return s


def build_summary(lc: LoopConfig, rows: Sequence[dict], env_step: int, wall_time: float,
                  sps: float, complete: bool) -> dict:
  """summary.json's content from metrics.csv's rows.

  A diverged member has no final return (None) and its `diverged_at_step`; it is listed
  in `diverged`, counted in `num_diverged`, and the final_return_* over members are over
  the members that did not diverge (the count says how many those are).
  """
  seeds = lc.seeds()
  per_member = []
  for i in range(lc.num_members):
    mine = [r for r in rows if int(r["member"]) == i]
    div = next((int(r["diverged_at_step"]) for r in mine
                if r.get("diverged_at_step") not in (None, "")), None)
    evals = [(int(r["env_step"]), _cell(r, "eval_return")) for r in mine]
    finite = [(s, x) for s, x in evals if x is not None and math.isfinite(x)]
    final = evals[-1] if evals else (None, None)
    best = max(finite, key=lambda x: x[1]) if finite else (None, None)
    entry = dict(member=i, seed=seeds[i], final_return=final[1],
                 final_env_step=final[0], best_return=best[1], best_env_step=best[0],
                 diverged_at_step=div)
    if lc.member_columns:
      entry.update(lc.member_columns[i])
    per_member.append(entry)
  finals = [m["final_return"] for m in per_member
            if m["final_return"] is not None and m["diverged_at_step"] is None]
  diverged = [dict(member=m["member"], seed=m["seed"], diverged_at_step=m["diverged_at_step"],
                   **({"setting": m["setting"]} if "setting" in m else {}))
              for m in per_member if m["diverged_at_step"] is not None]
  summary = dict(
      env_id=lc.env_id, num_members=lc.num_members,
      env_steps=env_step, total_env_steps=lc.total_env_steps, complete=complete,
      wall_time_s=round(wall_time, 2), sps_per_member=round(sps, 2),
      final_return_mean=float(np.mean(finals)) if finals else None,
      final_return_min=float(np.min(finals)) if finals else None,
      final_return_max=float(np.max(finals)) if finals else None,
      final_return_members=len(finals),
      num_diverged=len(diverged), diverged=diverged,
      members=per_member)
  if lc.branch_from is not None:  # its rows up to the step are the source's
    summary["branched_from"] = dict(run_dir=lc.branch_from, env_step=lc.branch_step)
  if lc.member_columns and "setting" in lc.member_columns[0]:
    summary["settings"] = rank_settings(per_member)
  return summary


def rank_settings(per_member: Sequence[dict]) -> list[dict]:
  """Settings ranked by their mean final return over seeds (best first).

  Each entry: rank, setting, the members and seeds in it, mean/std/min/max of their final
  returns, the mean of their best returns, and the members that diverged. A setting with a
  diverged member ranks after every setting without one (its means are over the seeds that
  did not diverge); settings without a return yet go last.
  """
  groups: dict[str, list[dict]] = {}
  for m in per_member:
    groups.setdefault(m["setting"], []).append(m)
  out = []
  for name, ms in groups.items():
    healthy = [m for m in ms if m.get("diverged_at_step") is None]
    finals = [m["final_return"] for m in healthy if m["final_return"] is not None]
    bests = [m["best_return"] for m in healthy if m["best_return"] is not None]
    out.append(dict(
        setting=name, members=[m["member"] for m in ms], seeds=[m["seed"] for m in ms],
        final_return_mean=float(np.mean(finals)) if finals else None,
        final_return_std=float(np.std(finals)) if finals else None,
        final_return_min=float(np.min(finals)) if finals else None,
        final_return_max=float(np.max(finals)) if finals else None,
        best_return_mean=float(np.mean(bests)) if bests else None,
        num_diverged=len(ms) - len(healthy),
        diverged_members=[m["member"] for m in ms if m not in healthy]))
  out.sort(key=lambda e: (e["num_diverged"] > 0, e["final_return_mean"] is None,
                          -(e["final_return_mean"] or 0.0)))
  for r, e in enumerate(out, 1):
    e["rank"] = r
  return out


# ---------------------------------------------------------------- a finished run
REPLAY_REWARD = ("train", "replay", "data", "reward")  # [members, capacity]


def _with_stored_replay(tree: dict, stored: dict) -> tuple[dict, tuple[int, int] | None]:
  """A branch's restore target: `tree` (this run's {"train", "pending"}) with the replay
  buffers in the capacity the source's checkpoint holds (its `stored` shapes), and (the
  source's capacity, this run's) when they differ, else None. The agent's `branch_state`
  then moves the restored buffers into this run's capacity (`replay.fit`)."""
  state = tree["train"]
  buffers = getattr(state, "replay", None)
  have = stored.get(REPLAY_REWARD)
  if buffers is None or have is None or len(have) != 2:
    return tree, None
  mine = replay_lib.capacity(buffers)
  if have[1] == mine:
    return tree, None

  def stored_size(x):
    return jax.ShapeDtypeStruct((x.shape[0], have[1]) + tuple(x.shape[2:]), x.dtype,
                                sharding=getattr(x, "sharding", None))

  buffers = buffers._replace(data=jax.tree.map(stored_size, buffers.data))
  return {**tree, "train": state._replace(replay=buffers)}, (have[1], mine)


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


def finalize(sac_config: agent_lib.SACConfig, lc: LoopConfig) -> dict | None:
  """For a complete run: rewrites summary.json and curves.png from metrics.csv.

  Returns the summary (None on processes other than 0, which write nothing).
  """
  from sac_jax import envs as envs_lib
  obs_dim, act_dim = envs_lib.env_dims(lc.env_id)
  ag = learners.make(sac_config, obs_dim, act_dim)
  hp = ag.default_hparams(lc.num_members)
  place = parallel.Placement(lc.num_members, devices_for(lc))
  out = RunDirectory(lc.run_dir, max_to_keep=lc.max_to_keep, handle_signals=False,
                     branch_from=lc.branch_from, branch_step=lc.branch_step)
  out.start(RunInfo(sac_config, lc, hp, ag.metric_names(), place))
  try:
    step = out.ckpt.latest_step() or 0
    host = out.ckpt.restore_host(step) if step else {}
    if not place.is_primary:
      return None
    out.csv.reset_to(step)
    rows = out.csv.read()
    sps = float(np.mean([float(r["sps"]) for r in rows])) if rows else 0.0
    s = out.report("summary.json", out.summary, step, float(host.get("wall_time", 0.0)),
                   sps, complete=step >= lc.total_env_steps)
    out.report("curves.png", out.plot)
    return s
  finally:
    out.close(LoopState(0, None, False, 0, 0.0), complete=False)
