"""Learning curves from a run directory's metrics.csv.

    python -m experiments.plot runs/<run>            # writes runs/<run>/curves.png
    python -m experiments.plot runs/<run> --out=x.png

One panel: evaluation return against env steps, the mean over members as a thick line with
a min-max band, every member as a thin line. Written to a temporary file, then os.replace.
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


def plot_curves(csv_path: str, out_path: str, title: str = "",
                labels: Sequence[str] | None = None) -> None:
  """Draws the curves of `csv_path` into `out_path` (PNG), atomically."""
  steps, curves = read_curves(csv_path)
  fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
  try:
    if len(steps):
      mat = np.stack(list(curves.values()))               # [M, T]
      colors = plt.cm.tab10(np.arange(len(curves)) % 10)
      for (m, y), c in zip(curves.items(), colors):
        label = labels[m] if labels is not None and m < len(labels) else f"member {m}"
        ax.plot(steps, y, lw=0.8, alpha=0.7, color=c, label=label)
      with np.errstate(all="ignore"):
        mean = np.nanmean(mat, axis=0)
        lo, hi = np.nanmin(mat, axis=0), np.nanmax(mat, axis=0)
      ax.fill_between(steps, lo, hi, color="k", alpha=0.12, lw=0, label="min-max")
      ax.plot(steps, mean, color="k", lw=2.2, label=f"mean over {len(curves)}")
      ax.legend(fontsize=7, loc="best", ncol=2 if len(curves) > 6 else 1)
    else:
      ax.text(0.5, 0.5, "no evaluation yet", ha="center", va="center",
              transform=ax.transAxes)
    ax.set_xlabel("env steps (per member)")
    ax.set_ylabel("evaluation return (deterministic)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
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
  finally:
    plt.close(fig)


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
