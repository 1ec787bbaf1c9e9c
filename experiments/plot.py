"""Learning curves from a run directory's metrics.csv.

    python -m experiments.plot runs/<run>            # writes runs/<run>/curves.png
    python -m experiments.plot runs/<run> --out=x.png

The drawing lives in the library (sac_jax.plotting, which the run directory's recorder
uses too); this is its command line. One panel: evaluation return against env steps. A
plain run: the mean over members as a thick line with a min-max band, every member as a
thin line. A sweep (metrics.csv has a `setting` column): one curve per setting, the mean
over its seeds with a min-max band. A mean is drawn only where all its members have a
return (a diverged member stops it, marked with an x).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from sac_jax.plotting import (has_column, plot_curves, plot_groups, read_curves,  # noqa: F401
                              read_diverged, read_groups)


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
