"""Learning curves from a run directory's metrics.csv.

    python -m experiments.plot runs/<run>            # writes runs/<run>/curves.png
    python -m experiments.plot runs/<run> --out=x.png
    python -m experiments.plot runs/<run> --metrics=eval_return,train_entropy,train_q_loss \\
        --log_y=train_q_loss --out=diagnostics.png

The drawing lives in the library (sac_jax.plotting, which the run directory's recorder
uses too); this is its command line. One panel: evaluation return against env steps. A
plain run: the mean over members as a thick line with a min-max band, every member as a
thin line. A sweep (metrics.csv has a `setting` column): one curve per setting, the mean
over its seeds with a min-max band. A mean is drawn only where all its members have a
return (a diverged member stops it, marked with an x).

--metrics=COL,...: one panel per metrics.csv column instead, on a shared env-step axis
(any column: eval_return, train_q_loss, train_entropy, train_v, ...; a training metric is
the member's last update before that evaluation); default out <run>/metrics.png.
--log_y=COL,...: those panels on a logarithmic y axis.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from sac_jax.plotting import (has_column, plot_curves, plot_groups, plot_metrics,  # noqa: F401
                              read_curves, read_diverged, read_groups)

OPTIONS = ("--out", "--metrics", "--log_y")


def main(argv: Sequence[str]) -> int:
  if len(argv) < 2 or argv[1] in ("-h", "--help"):
    print(__doc__)
    return 2
  run_dir = argv[1]
  opts = {}
  for a in argv[2:]:
    name, eq, value = a.partition("=")
    if name not in OPTIONS or not eq:
      print(f"error: unknown argument {a!r}: the options are "
            + ", ".join(f"{o}=..." for o in OPTIONS), file=sys.stderr)
      return 2
    opts[name] = value
  csv_path = os.path.join(run_dir, "metrics.csv")
  if not os.path.exists(csv_path):
    print(f"error: {csv_path} does not exist", file=sys.stderr)
    return 1
  title = os.path.basename(os.path.abspath(run_dir))
  if "--metrics" in opts or "--log_y" in opts:
    names = [n for n in opts.get("--metrics", "").split(",") if n]
    log_y = [n for n in opts.get("--log_y", "").split(",") if n]
    out = opts.get("--out") or os.path.join(run_dir, "metrics.png")
    try:
      plot_metrics(csv_path, out, names, log_y, title=title)
    except ValueError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
  else:
    out = opts.get("--out") or os.path.join(run_dir, "curves.png")
    plot_curves(csv_path, out, title=title)
  print(out)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
