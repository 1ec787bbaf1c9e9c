"""A recorder writing TensorBoard event files with tensorboardX (no TensorFlow needed).

    pip install 'sac_jax[tensorboard]'       # tensorboardX
    python -m experiments.run ... --tensorboard    # <run_dir>/tensorboard/
    tensorboard --logdir <run_dir>/tensorboard

At every evaluation: `eval_return/member_<i>` (the member's mean return over the episodes),
`eval_return_mean/<setting>` (the mean over a sweep setting's seeds, characters TensorBoard
refuses in a tag written as _, e.g. reward_scale_3_lr_0.001; `eval_return_mean/all` without
a sweep) and `train/<metric>/member_<i>` (training metrics,
from the first update on). Like curves.png, a member that diverged has no return from
then on, and a mean is written only when every member of it has a return. On resume the
events past the resume point are purged (`purge_step`), so a kill between a checkpoint and
an evaluation leaves no doubled point. With several processes each writes its own members'
training metrics; process 0 writes the returns and the means. A branch (`--branch_from`)
writes its events from its branch step on; the history before it is in the source run's
event files (its metrics.csv has both), so `tensorboard --logdir` over the two runs' parent
directory draws the branch as a line leaving the source's at that step.
"""

from __future__ import annotations

import os
import re

import numpy as np

from sac_jax.protocol import EvalRecord, LoopState, ResumePoint, RunInfo
from sac_jax.recorders import Recorder


class TensorBoard(Recorder):
  """Writes event files under `logdir` (tensorboardX's SummaryWriter)."""

  def __init__(self, logdir: str):
    self.logdir = logdir
    self.writer = None

  def start(self, run: RunInfo) -> None:
    try:
      import tensorboardX  # noqa: F401
    except ImportError as e:
      raise ImportError("the TensorBoard recorder needs tensorboardX: pip install "
                        "'sac_jax[tensorboard]' (or pip install tensorboardX)") from e
    self.columns = run.loop_config.member_columns
    self.primary = run.placement.is_primary
    self.process = run.placement.members.start

  def restore(self, like: ResumePoint) -> None:
    # Called after the recorders before it, so `like` is the resume point already found.
    from tensorboardX import SummaryWriter
    step = int(like.loop.env_step)
    os.makedirs(self.logdir, exist_ok=True)
    self.writer = SummaryWriter(self.logdir, purge_step=step + 1 if step else None,
                                filename_suffix=f".members{self.process}")
    return None

  def on_eval(self, record: EvalRecord) -> None:
    w, step = self.writer, int(record.env_step)
    if self.primary:
      means = np.asarray(record.all_means, np.float64)
      for i, x in enumerate(means):
        if np.isfinite(x):
          w.add_scalar(f"eval_return/member_{i}", float(x), step)
      groups: dict[str, list[int]] = {}
      for i in range(len(means)):
        name = (self.columns[i].get("setting") if self.columns else None) or "all"
        name = re.sub(r"[^-/\w.]", "_", name)  # what TensorBoard accepts in a tag
        groups.setdefault(name, []).append(i)
      for name, members in groups.items():
        if np.isfinite(means[members]).all():  # never a mean with a member missing
          w.add_scalar(f"eval_return_mean/{name}", float(np.mean(means[members])), step)
    for k, i in enumerate(record.members):
      if record.diverged_at[k] >= 0:
        continue
      for n, v in record.train_metrics.items():
        w.add_scalar(f"train/{n}/member_{i}", float(np.asarray(v)[k]), step)
    w.flush()

  def close(self, loop: LoopState, complete: bool) -> None:
    if self.writer is not None:
      self.writer.close()
      self.writer = None
