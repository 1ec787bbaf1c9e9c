"""Learning curves from a run directory's metrics.csv (matplotlib, Agg backend).

One panel: evaluation return against env steps. A plain run: the mean over members as a
thick line with a min-max band, every member as a thin line. A sweep (metrics.csv has a
`setting` column): one curve per setting, the mean over its seeds with a min-max band.
`plot_groups` draws any {label: (env steps [T], returns [n, T])} this way
(experiments/sweep.py uses it for several run directories in one figure). `plot_metrics`
draws any columns of metrics.csv (training metrics: losses, entropy, Q), one panel each.

Missing returns (an empty `eval_return` cell: a member that diverged, see
`diverged_at_step`) are never dropped from a mean silently: the mean and the band are
drawn only at the env steps where every member of the curve has a return, so a mean stops
at the first divergence of one of its members, marked with an x, and the legend says so.
Members that go on are still drawn (thin lines). Files are written to a temporary file,
then moved into place with os.replace.
"""

from __future__ import annotations

import collections
import csv
import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sac_jax import rundir  # noqa: E402

STOP_RULE = "mean and band drawn only where every member has a return; x: a member diverged"


def _value(cell: str | None) -> float:
  """A metrics.csv cell as a float; empty (no value: diverged, no update yet) is NaN."""
  return float(cell) if cell not in (None, "") else float("nan")


def read_curves(csv_path: str, column: str = "eval_return"
                ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
  """(env steps [T], {member: values [T]}) of one metrics.csv column (default the return),
  NaN where a value is missing."""
  by_member: dict[int, dict[int, float]] = collections.defaultdict(dict)
  with open(csv_path, newline="") as f:
    for row in csv.DictReader(f):
      by_member[int(row["member"])][int(row["env_step"])] = _value(row[column])
  steps = np.array(sorted({s for d in by_member.values() for s in d}), np.int64)
  curves = {m: np.array([d.get(int(s), np.nan) for s in steps]) for m, d in
            sorted(by_member.items())}
  return steps, curves


def read_diverged(csv_path: str) -> dict[int, int]:
  """{member: env step at which it diverged} from the `diverged_at_step` column."""
  out: dict[int, int] = {}
  with open(csv_path, newline="") as f:
    for row in csv.DictReader(f):
      cell = row.get("diverged_at_step")
      if cell not in (None, ""):
        out.setdefault(int(row["member"]), int(cell))
  return out


def read_groups(csv_path: str, column: str = "setting", prefix: str = "",
                value: str = "eval_return") -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{prefix + group: (env steps [T], values [n members, T])} of the `value` column (default
  the return), groups by `column` in first-appearance order (a file without that column is
  one group named `prefix`)."""
  by_group: dict[str, dict[int, dict[int, float]]] = {}
  with open(csv_path, newline="") as f:
    for row in csv.DictReader(f):
      g = row.get(column, "")
      d = by_group.setdefault(g, collections.defaultdict(dict))
      d[int(row["member"])][int(row["env_step"])] = _value(row[value])
  out = {}
  for g, by_member in by_group.items():
    steps = np.array(sorted({s for d in by_member.values() for s in d}), np.int64)
    mat = np.array([[d.get(int(s), np.nan) for s in steps] for _, d in
                    sorted(by_member.items())])
    label = (prefix + (" " if prefix and g else "") + g) or "all members"
    out[label] = (steps, mat)
  return out


def columns(csv_path: str) -> list[str]:
  """The header of a metrics.csv."""
  with open(csv_path, newline="") as f:
    return next(csv.reader(f), None) or []


def has_column(csv_path: str, column: str) -> bool:
  return column in columns(csv_path)


def plot_groups(groups: dict[str, tuple[np.ndarray, np.ndarray]], out_path: str,
                title: str = "", mark: tuple[int, str] | None = None) -> None:
  """One curve per group: the mean over its members (thick) with a min-max band, drawn
  where every member has a return; after a member stops (diverged), an x marks the end of
  the mean and the members that go on are drawn as thin lines. `mark`: (env step, text),
  a dotted vertical line (a branch's start)."""
  fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
  try:
    if groups:
      colors = plt.cm.tab10(np.arange(len(groups)) % 10)
      stopped_any = False
      for (label, (steps, mat)), c in zip(groups.items(), colors):
        mean, lo, hi = _band(mat)
        ax.fill_between(steps, lo, hi, color=c, alpha=0.15, lw=0)
        n_out = int(np.sum(np.isnan(mat[:, -1]))) if mat.size else 0
        if np.isfinite(mean).any():
          last = np.flatnonzero(np.isfinite(mean))[-1]
          final = f", final {mean[-1]:.1f}" if np.isfinite(mean[-1]) else (
              f", mean stops at {steps[last]}: {n_out} diverged")
        else:
          final = f", {n_out} diverged" if n_out else ""
        ax.plot(steps, mean, color=c, lw=2.0, marker="o" if len(steps) < 12 else None,
                ms=3, label=f"{label} ({len(mat)} seed{'s' if len(mat) != 1 else ''}"
                            f"{final})")
        stop = _stop_index(mean)
        if stop is not None:
          stopped_any = True
          ax.plot(steps[stop], mean[stop], marker="x", ms=10, mew=2.5, color=c)
          for y in mat:  # the members that go on, thin
            if np.isfinite(y[stop + 1:]).any():
              ax.plot(steps[stop:], y[stop:], color=c, lw=0.8, alpha=0.6, ls="--")
      ax.legend(fontsize=7, loc="best", ncol=2 if len(groups) > 6 else 1,
                title="mean over seeds, band: min-max" +
                      (f"\n{STOP_RULE}" if stopped_any else ""), title_fontsize=7)
    _finish(fig, ax, title, out_path, mark)
  finally:
    plt.close(fig)


def plot_curves(csv_path: str, out_path: str, title: str = "",
                labels: Sequence[str] | None = None,
                mark: tuple[int, str] | None = None) -> None:
  """Draws the curves of `csv_path` into `out_path` (PNG), atomically.

  With a `setting` column (a sweep): one curve per setting (`plot_groups`). `mark`: (env
  step, text), drawn as a dotted vertical line (a branch's start).
  """
  if has_column(csv_path, "setting"):
    plot_groups(read_groups(csv_path), out_path, title, mark)
    return
  steps, curves = read_curves(csv_path)
  diverged = read_diverged(csv_path) if has_column(csv_path, "diverged_at_step") else {}
  fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
  try:
    if len(steps):
      mat = np.stack(list(curves.values()))               # [M, T]
      colors = plt.cm.tab10(np.arange(len(curves)) % 10)
      for (m, y), c in zip(curves.items(), colors):
        label = labels[m] if labels is not None and m < len(labels) else f"member {m}"
        if m in diverged:
          label += f" (diverged at {diverged[m]})"
        ax.plot(steps, y, lw=0.8, alpha=0.7, color=c, label=label)
        end = _stop_index(y)
        if end is not None:
          ax.plot(steps[end], y[end], marker="x", ms=9, mew=2.2, color=c)
      mean, lo, hi = _band(mat)
      ax.fill_between(steps, lo, hi, color="k", alpha=0.12, lw=0, label="min-max")
      ax.plot(steps, mean, color="k", lw=2.2, label=f"mean over {len(curves)}")
      stop = _stop_index(mean)
      if stop is not None:
        ax.plot(steps[stop], mean[stop], marker="x", ms=11, mew=2.5, color="k")
      ax.legend(fontsize=7, loc="best", ncol=2 if len(curves) > 6 else 1,
                title=STOP_RULE if (diverged or stop is not None) else None,
                title_fontsize=7)
    _finish(fig, ax, title, out_path, mark)
  finally:
    plt.close(fig)


def metrics_figure(csv_path: str, names: Sequence[str], log_y: Sequence[str] = (),
                   title: str = ""):
  """One panel per metrics.csv column in `names`, stacked on a shared env-step axis: a plain
  run's members as thin lines with their mean (thick, drawn where every member has a
  value), a sweep's settings as the mean over their seeds with a min-max band. Columns in
  `log_y` get a logarithmic y axis (a loss that grows by orders of magnitude). ValueError,
  before drawing anything, for a column the file does not have (naming those it has) or a
  `log_y` column that is not in `names`."""
  have = columns(csv_path)
  if not names:
    raise ValueError("no column to draw: name one or more of " + ", ".join(have))
  missing = [n for n in names if n not in have]
  if missing:
    raise ValueError(f"column(s) {', '.join(missing)} not in {csv_path}; its columns: "
                     + ", ".join(have))
  stray = [n for n in log_y if n not in names]
  if stray:
    raise ValueError(f"log scale for {', '.join(stray)}: not among the columns drawn "
                     f"({', '.join(names)})")
  sweep = "setting" in have
  seeds = {}
  if "seed" in have and not sweep:
    with open(csv_path, newline="") as f:
      seeds = {int(r["member"]): r["seed"] for r in csv.DictReader(f)}
  fig, axes = plt.subplots(len(names), 1, sharex=True, squeeze=False, dpi=110,
                           figsize=(7.5, 1.0 + 2.4 * len(names)))
  for ax, name in zip(axes[:, 0], names):
    if sweep:
      groups = read_groups(csv_path, value=name)
      for (label, (steps, mat)), c in zip(groups.items(),
                                          plt.cm.tab10(np.arange(len(groups)) % 10)):
        mean, lo, hi = _band(mat)
        ax.fill_between(steps, lo, hi, color=c, alpha=0.15, lw=0)
        ax.plot(steps, mean, color=c, lw=1.8, label=f"{label} ({len(mat)})")
    else:
      steps, curves = read_curves(csv_path, name)
      for (m, y), c in zip(curves.items(), plt.cm.tab10(np.arange(len(curves)) % 10)):
        label = f"member {m}" + (f" (seed {seeds[m]})" if m in seeds else "")
        ax.plot(steps, y, lw=0.8, alpha=0.75, color=c, label=label)
      if curves:
        ax.plot(steps, _band(np.stack(list(curves.values())))[0], color="k", lw=2.0,
                label=f"mean over {len(curves)}")
    if name in log_y:
      ax.set_yscale("log")
    ax.set_ylabel(name, fontsize=8)
    ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize=7, loc="best", ncol=2 if len(axes[0, 0].lines) > 6 else 1)
  axes[0, 0].set_title(title, fontsize=9)
  axes[-1, 0].set_xlabel("env steps (per member)")
  fig.tight_layout()
  return fig


def plot_metrics(csv_path: str, out_path: str, names: Sequence[str],
                 log_y: Sequence[str] = (), title: str = "") -> None:
  """metrics_figure as a PNG at `out_path`, atomically."""
  fig = metrics_figure(csv_path, names, log_y, title)
  try:
    save(fig, out_path)
  finally:
    plt.close(fig)


def _band(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean, min and max over members (axis 0); NaN (not drawn) wherever any member has no
  return, so no member silently leaves the mean."""
  with np.errstate(all="ignore"):
    return np.mean(mat, axis=0), np.min(mat, axis=0), np.max(mat, axis=0)


def _stop_index(y: np.ndarray) -> int | None:
  """The last finite index of `y` when values after it are missing (a curve that stops)."""
  finite = np.isfinite(y)
  if not finite.any() or finite[-1]:
    return None
  return int(np.flatnonzero(finite)[-1])


def _finish(fig, ax, title: str, out_path: str,
            mark: tuple[int, str] | None = None) -> None:
  """Labels, title, grid, the empty-plot notice, the mark, then an atomic save."""
  if not ax.lines:
    ax.text(0.5, 0.5, "no evaluation yet", ha="center", va="center",
            transform=ax.transAxes)
  if mark is not None:
    lo, hi = ax.get_xlim()
    right = mark[0] > (lo + hi) / 2  # the label on the side with room, inside the axes
    ax.axvline(mark[0], color="0.35", ls=":", lw=1.2)
    ax.annotate(f"{mark[1]} at {mark[0]:,}", xy=(mark[0], 0.0),
                xycoords=("data", "axes fraction"), xytext=(-3 if right else 3, 3),
                textcoords="offset points", ha="right" if right else "left",
                va="bottom", fontsize=7, color="0.3")
  ax.set_xlabel("env steps (per member)")
  ax.set_ylabel("evaluation return (deterministic)")
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  save(fig, out_path)


def save(fig, out_path: str) -> None:
  """fig as PNG at `out_path`, atomically (rundir.atomic_write)."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png")
  rundir.atomic_write(out_path, buf.getvalue())
