"""The files of a run directory, each written atomically.

    flags.txt      a flagfile reproducing the run (written by experiments/run.py)
    run.json       the resolved flag values, compared on resume
    metrics.csv    one row per (evaluation point, member)
    checkpoints/   orbax checkpoints (sac_jax.checkpoint)
    curves.png     evaluation return against env steps
    summary.json   final and best returns per member, wall time, SPS

Whole files are written to a temporary file in the same directory, fsynced, then moved into
place with `os.replace`. metrics.csv grows by appending one evaluation's rows with
flush + fsync; on resume it is truncated to the checkpoint's env step and rewritten
atomically, so a kill between the append and the checkpoint neither loses nor doubles a row.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from typing import Any, Iterable, Sequence

METRICS = "metrics.csv"
SUMMARY = "summary.json"
CURVES = "curves.png"
CHECKPOINTS = "checkpoints"


def atomic_write(path: str, data: str | bytes) -> None:
  """Writes `data` to `path` via a temporary file and os.replace."""
  d = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data.encode() if isinstance(data, str) else data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, file_mode())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def file_mode() -> int:
  """0o666 less the umask: what open() would give (mkstemp gives 0o600)."""
  mask = os.umask(0)
  os.umask(mask)
  return 0o666 & ~mask


def write_json(path: str, obj: Any) -> None:
  atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def check_writable(run_dir: str) -> None:
  """Creates `run_dir` and proves a file can be written there; raises OSError if not."""
  os.makedirs(run_dir, exist_ok=True)
  probe = os.path.join(run_dir, ".write_probe")
  with open(probe, "w") as f:
    f.write("ok")
  os.unlink(probe)


def _fmt(v) -> str:
  if isinstance(v, float):
    return repr(v) if math.isfinite(v) else str(v)
  return str(v)


class MetricsCSV:
  """metrics.csv with a fixed header; rows are dicts keyed by column."""

  def __init__(self, run_dir: str, columns: Sequence[str]):
    self.path = os.path.join(run_dir, METRICS)
    self.columns = list(columns)

  def read(self) -> list[dict[str, str]]:
    if not os.path.exists(self.path):
      return []
    with open(self.path, newline="") as f:
      return list(csv.DictReader(f))

  def _render(self, rows: Iterable[dict], header: bool) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore",
                       lineterminator="\n")
    if header:
      w.writeheader()
    for r in rows:
      w.writerow({k: _fmt(v) for k, v in r.items()})
    return buf.getvalue()

  def reset_to(self, env_step: int) -> int:
    """Keeps rows with env_step <= `env_step` (the checkpoint's); rewrites atomically.

    Returns the number of rows kept. A header that differs from `columns` is an error
    (the run was started by a different version or flags).
    """
    rows = self.read()
    if os.path.exists(self.path):
      with open(self.path, newline="") as f:
        header = next(csv.reader(f), None)
      if header is not None and header != self.columns:
        raise ValueError(f"{self.path} has columns {header}, expected {self.columns}")
    kept = [r for r in rows if int(r["env_step"]) <= env_step]
    atomic_write(self.path, self._render(kept, header=True))
    return len(kept)

  def append(self, rows: Sequence[dict]) -> None:
    with open(self.path, "a", newline="") as f:
      f.write(self._render(rows, header=False))
      f.flush()
      os.fsync(f.fileno())
