"""Learning curves from a run directory's metrics.csv.

    python -m experiments.plot runs/<run>            # writes runs/<run>/curves.png
    python -m experiments.plot runs/<run> --out=x.png

One panel: evaluation return against env steps. A plain run: the mean over members as a
thick line with a min-max band, every member as a thin line. A sweep (metrics.csv has a
`setting` column): one curve per setting, the mean over its seeds with a min-max band.
`plot_groups` draws any {label: returns [n, T]} this way (experiments/sweep.py uses it for
several run directories in one figure). Written to a temporary file, then os.replace.
"""

from __future__ import annotations

import collections
import csv
import os
import sys
import tempfile
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_curves(csv_path: str) -> tuple[np.ndarray, dict[int, np.ndarray]]:
  """(env steps [T], {member: returns [T]}) from metrics.csv, NaN where a value is missing."""
  by_member: dict[int, dict[int, float]] = collections.defaultdict(dict)
  with open(csv_path, newline="") as f:
    for row in csv.DictReader(f):
      by_member[int(row["member"])][int(row["env_step"])] = float(row["eval_return"])
  steps = np.array(sorted({s for d in by_member.values() for s in d}), np.int64)
  curves = {m: np.array([d.get(int(s), np.nan) for s in steps]) for m, d in
            sorted(by_member.items())}
  return steps, curves


def read_groups(csv_path: str, column: str = "setting", prefix: str = ""
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{prefix + group: (env steps [T], returns [n members, T])}, groups by `column` in
  first-appearance order (a file without that column is one group named `prefix`)."""
  by_group: dict[str, dict[int, dict[int, float]]] = {}
  with open(csv_path, newline="") as f:
    for row in csv.DictReader(f):
      g = row.get(column, "")
      d = by_group.setdefault(g, collections.defaultdict(dict))
      d[int(row["member"])][int(row["env_step"])] = float(row["eval_return"])
  out = {}
  for g, by_member in by_group.items():
    steps = np.array(sorted({s for d in by_member.values() for s in d}), np.int64)
    mat = np.array([[d.get(int(s), np.nan) for s in steps] for _, d in
                    sorted(by_member.items())])
    label = (prefix + (" " if prefix and g else "") + g) or "all members"
    out[label] = (steps, mat)
  return out


def has_column(csv_path: str, column: str) -> bool:
  with open(csv_path, newline="") as f:
    return column in (next(csv.reader(f), None) or [])


def plot_groups(groups: dict[str, tuple[np.ndarray, np.ndarray]], out_path: str,
                title: str = "") -> None:
  """One curve per group: the mean over its members (thick) with a min-max band."""
  fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
  try:
    if groups:
      colors = plt.cm.tab10(np.arange(len(groups)) % 10)
      for (label, (steps, mat)), c in zip(groups.items(), colors):
        mean, lo, hi = _band(mat)
        ax.fill_between(steps, lo, hi, color=c, alpha=0.15, lw=0)
        final = f", final {mean[-1]:.1f}" if len(mean) else ""
        ax.plot(steps, mean, color=c, lw=2.0, marker="o" if len(steps) < 12 else None,
                ms=3, label=f"{label} ({len(mat)} seed{'s' if len(mat) != 1 else ''}"
                            f"{final})")
      ax.legend(fontsize=7, loc="best", ncol=2 if len(groups) > 6 else 1,
                title="mean over seeds, band: min-max", title_fontsize=7)
    _finish(fig, ax, title, out_path)
  finally:
    plt.close(fig)


def plot_curves(csv_path: str, out_path: str, title: str = "",
                labels: Sequence[str] | None = None) -> None:
  """Draws the curves of `csv_path` into `out_path` (PNG), atomically.

  With a `setting` column (a sweep): one curve per setting (`plot_groups`).
  """
  if has_column(csv_path, "setting"):
    plot_groups(read_groups(csv_path), out_path, title)
    return
  steps, curves = read_curves(csv_path)
  fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
  try:
    if len(steps):
      mat = np.stack(list(curves.values()))               # [M, T]
      colors = plt.cm.tab10(np.arange(len(curves)) % 10)
      for (m, y), c in zip(curves.items(), colors):
        label = labels[m] if labels is not None and m < len(labels) else f"member {m}"
        ax.plot(steps, y, lw=0.8, alpha=0.7, color=c, label=label)
      mean, lo, hi = _band(mat)
      ax.fill_between(steps, lo, hi, color="k", alpha=0.12, lw=0, label="min-max")
      ax.plot(steps, mean, color="k", lw=2.2, label=f"mean over {len(curves)}")
      ax.legend(fontsize=7, loc="best", ncol=2 if len(curves) > 6 else 1)
    _finish(fig, ax, title, out_path)
  finally:
    plt.close(fig)


def _band(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean, min and max over members (axis 0), ignoring missing evaluations (NaN)."""
  with np.errstate(all="ignore"):
    return np.nanmean(mat, axis=0), np.nanmin(mat, axis=0), np.nanmax(mat, axis=0)


def _finish(fig, ax, title: str, out_path: str) -> None:
  """Labels, title, grid, the empty-plot notice, then an atomic save."""
  if not ax.lines:
    ax.text(0.5, 0.5, "no evaluation yet", ha="center", va="center",
            transform=ax.transAxes)
  ax.set_xlabel("env steps (per member)")
  ax.set_ylabel("evaluation return (deterministic)")
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  _save(fig, out_path)


def _save(fig, out_path: str) -> None:
  d = os.path.dirname(os.path.abspath(out_path))
  fd, tmp = tempfile.mkstemp(dir=d, prefix=".curves.", suffix=".png")
  try:
    with os.fdopen(fd, "wb") as f:
      fig.savefig(f, format="png")
      f.flush()
      os.fsync(f.fileno())
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, out_path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def main(argv: Sequence[str]) -> int:
  if len(argv) < 2 or argv[1] in ("-h", "--help"):
    print(__doc__)
    return 2
  run_dir = argv[1]
  out = os.path.join(run_dir, "curves.png")
  for a in argv[2:]:
    if a.startswith("--out="):
      out = a[len("--out="):]
  csv_path = os.path.join(run_dir, "metrics.csv")
  if not os.path.exists(csv_path):
    print(f"error: {csv_path} does not exist", file=sys.stderr)
    return 1
  plot_curves(csv_path, out, title=os.path.basename(os.path.abspath(run_dir)))
  print(out)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
