"""The files of a run directory, each written atomically.

    flags.txt      a flagfile reproducing the run (written by experiments/run.py)
    run.json       the resolved flag values, compared on resume
    metrics.csv    one row per (evaluation point, member)
    checkpoints/   orbax checkpoints (sac_jax.checkpoint)
    curves.png     evaluation return against env steps
    summary.json   final and best returns per member, wall time, SPS, diverged members
    processes/     with several processes: metrics.<p>.csv, process p's own rows, merged
                   into metrics.csv by process 0 at every evaluation

Whole files are written to a temporary file in the same directory, fsynced, then moved into
place with `os.replace`. metrics.csv grows by appending one evaluation's rows with
flush + fsync; on resume it is truncated to the checkpoint's env step and rewritten
atomically, so a kill between the append and the checkpoint neither loses nor doubles a row.
A kill in the middle of an append leaves a last line without its newline: reading drops
it (and the resume's rewrite removes it). An empty cell means "no value" (a member that
diverged, a training metric before the first update); JSON files are strict (NaN and
infinities are written as null).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import socket
import tempfile
from typing import Any, Iterable, Sequence

METRICS = "metrics.csv"
SUMMARY = "summary.json"
CURVES = "curves.png"
CHECKPOINTS = "checkpoints"
PROCESSES = "processes"


def process_metrics(process_index: int) -> str:
  """Process `process_index`'s part of metrics.csv, relative to the run directory."""
  return os.path.join(PROCESSES, f"metrics.{process_index}.csv")


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


def strict_json(obj: Any) -> Any:
  """`obj` with every non-finite float (and numpy scalar) replaced by a JSON-safe value."""
  if isinstance(obj, dict):
    return {k: strict_json(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [strict_json(v) for v in obj]
  if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy scalar
    obj = obj.item()
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  return obj


def write_json(path: str, obj: Any) -> None:
  """Strict JSON (NaN and infinities become null), atomically."""
  atomic_write(path, json.dumps(strict_json(obj), indent=2, sort_keys=True,
                                allow_nan=False) + "\n")


def check_writable(run_dir: str) -> None:
  """Creates `run_dir` and proves a file can be written there; raises OSError if not."""
  os.makedirs(run_dir, exist_ok=True)
  probe = os.path.join(run_dir, ".write_probe")
  probe += f".{socket.gethostname()}.{os.getpid()}"  # several processes probe at once
  with open(probe, "w") as f:
    f.write("ok")
  os.unlink(probe)


def _fmt(v) -> str:
  if v is None:
    return ""
  if isinstance(v, float):
    if math.isnan(v):
      return ""  # no value
    return repr(v) if math.isfinite(v) else str(v)
  return str(v)


class MetricsCSV:
  """metrics.csv (or another file of the same columns) with a fixed header; rows are dicts
  keyed by column."""

  def __init__(self, run_dir: str, columns: Sequence[str], filename: str = METRICS):
    self.path = os.path.join(run_dir, filename)
    self.columns = list(columns)

  def read(self, check_header: bool = False) -> list[dict[str, str]]:
    """The complete rows; a last line without its newline (a kill mid-append) is dropped."""
    if not os.path.exists(self.path):
      return []
    with open(self.path, newline="") as f:
      text = f.read()
    if not text.endswith("\n"):
      text = text[:text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if check_header and reader.fieldnames not in (None, self.columns):
      if not self.older_header(reader.fieldnames):
        raise ValueError(f"{self.path} has columns {reader.fieldnames}, expected "
                         f"{self.columns}")
    return list(reader)

  def older_header(self, found: Sequence[str]) -> bool:
    """Whether `found` is this file's header less some training metrics (train_*) that a
    later version added: its rows are kept, with those cells empty."""
    missing = [c for c in self.columns if c not in found]
    return (len(set(found)) == len(found) and bool(missing)
            and all(c.startswith("train_") for c in missing)
            and [c for c in self.columns if c in found] == list(found))

  def rows_for_branch(self, source_dir: str, env_step: int
                      ) -> tuple[list[dict[str, str]], list[str]]:
    """Another run's metrics.csv rows up to `env_step`, for this file's columns (a
    branch's start): (rows, the source's training metrics this file lacks, left out).

    The two runs may record different training metrics (a branch that learns the
    temperature adds train_alpha_loss; one that stops drops it): missing train_* cells
    are empty, extra ones are left out. Any other difference in the columns is an error.
    """
    src = MetricsCSV(source_dir, self.columns)
    if not os.path.exists(src.path):
      raise ValueError(f"{src.path} does not exist: the source run has no metrics.csv")
    with open(src.path, newline="") as f:
      found = next(csv.reader(f), [])
    rest = lambda cols: [c for c in cols if not c.startswith("train_")]
    if rest(found) != rest(self.columns):
      raise ValueError(f"{src.path} has columns {found}, this run's are {self.columns}: "
                       "beyond the training metrics they must be the same")
    dropped = [c for c in found if c.startswith("train_") and c not in self.columns]
    rows = [r for r in src.read() if int(r["env_step"]) <= env_step]
    return [{k: v for k, v in r.items() if k not in dropped} for r in rows], dropped

  def write(self, rows: Iterable[dict]) -> None:
    """Replaces the file with a header and `rows`, atomically."""
    atomic_write(self.path, self._render(rows, header=True))

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
    (the run was started by a different version or flags), except one that lacks only
    training metrics added since (older rows get empty cells there).
    """
    kept = [r for r in self.read(check_header=True) if int(r["env_step"]) <= env_step]
    self.write(kept)
    return len(kept)

  def append(self, rows: Sequence[dict]) -> None:
    if not os.path.exists(self.path) or os.path.getsize(self.path) == 0:
      self.write(rows)  # with the header
      return
    with open(self.path, "a", newline="") as f:
      f.write(self._render(rows, header=False))
      f.flush()
      os.fsync(f.fileno())
