r"""The numbers a learning-curve table cites, from a run directory's metrics.csv.

    python -m experiments.run_stats RUN_DIR [RUN_DIR ...]

One markdown row per setting of each run (a `--sweep` run has several; the members of a
setting are its seeds): the seeds; the final evaluation (mean, and per seed); the "final"
of the reproduction's claims, the mean of each seed's last 3 evaluations
(`verdict.summarize_curve`), with the bootstrap 95% interval of its mean over seeds (the
`tasks` bar's interval: 10,000 resamples, numpy seed 0); the mean over all evaluations
(the normalized AUC); the mean of each seed's best evaluation; the policy's log pi in
training (median and range over every logged row); and, where the task has a stored
zero-action return (`experiments.references`; an env id from `experiments.variants` uses
its base task's), whether the last-3 interval lies above it ("above"), below it ("below")
or across it ("not apart"). Nothing is recomputed from the runs' checkpoints: every number
is a statistic of the CSV's columns.

    python -m experiments.run_stats RUN_DIR [RUN_DIR ...] --by_window=STEPS --metrics=COL,...

How columns move through a run instead: for each run and each column (a training metric,
train_entropy, train_q_loss, train_abs_u, ..., or any other), one markdown table with a row
per member (its setting and seed) and a column per window of STEPS env steps, [0, STEPS),
[STEPS, 2 STEPS), ... (labelled by its start), holding the median of that member's values
in the window (an empty cell: none there, e.g. before the first update).

    python -m experiments.run_stats RUN_DIR [RUN_DIR ...] --drop=FROM,BY [--fraction=0.5]

Whether members held what they had (a collapse's count): for each member, its level at
FROM (the mean of its last 3 evaluations up to FROM), the lowest running mean of 3
consecutive evaluations ending in (FROM, BY] and where, and whether that running mean fell
below FRACTION x the level (the first step it did); then how many of the members fell.
A member whose level is <= 0 (it had not learned) is not judged.
"""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np

from experiments import references
from experiments import verdict as V

LAST = 3
HEADER = ("| run | setting | seeds | final evaluation: mean (per seed) | last 3: mean [95%] | "
          "all evaluations | best (mean) | log pi in training: median (range) | "
          "against the zero action |")

# Variants measured against their base task's floor.
_BASE_TASK = {"HumanoidNoContactForces-v5": "humanoid"}


def floor_of(env_id: str) -> float | None:
  """The stored zero-action return for a run's env id, or None."""
  name = env_id.split(":", 1)[-1]
  for task, eid in references.ENV_IDS.items():
    if eid == name:
      return references.zero_action(task)
  task = _BASE_TASK.get(name)
  return references.zero_action(task) if task else None


def setting_stats(rows: list[dict]) -> dict:
  """Statistics of one setting's rows (every member's evaluations, in any order)."""
  curves: dict[int, list[tuple[int, float]]] = {}
  seeds: dict[int, int] = {}
  log_pi = []
  for r in rows:
    m = int(r["member"])
    seeds[m] = int(r["seed"])
    if r.get("eval_return", "") != "":
      curves.setdefault(m, []).append((int(r["env_step"]), float(r["eval_return"])))
    if r.get("train_log_pi", "") not in ("", None):
      log_pi.append(float(r["train_log_pi"]))
  members = sorted(curves)
  per = [V.summarize_curve([v for _, v in sorted(curves[m])], LAST) for m in members]
  finals = [sorted(curves[m])[-1][1] for m in members]
  last3 = [p["final"] for p in per]
  return dict(seeds=[seeds[m] for m in members],
              steps=[sorted(curves[m])[-1][0] for m in members],
              final=finals, final_mean=float(np.mean(finals)),
              last3=last3, last3_mean=float(np.mean(last3)), last3_ci95=V.mean_ci95(last3),
              auc_mean=float(np.mean([p["auc"] for p in per])),
              best_mean=float(np.mean([p["max"] for p in per])),
              log_pi_median=float(np.median(log_pi)) if log_pi else None,
              log_pi_range=[float(min(log_pi)), float(max(log_pi))] if log_pi else None)


def _env_id(run_dir: str) -> str:
  """The run's env id: summary.json's (what docs/ keeps of a run), else run.json's flags."""
  summary = os.path.join(run_dir, "summary.json")
  if os.path.isfile(summary):
    with open(summary) as f:
      return json.load(f)["env_id"]
  with open(os.path.join(run_dir, "run.json")) as f:
    return json.load(f)["flags"]["env_id"]


def run_stats(run_dir: str) -> list[dict]:
  """[{setting, env_id, floor, against_floor, ...setting_stats}] for one run directory."""
  path = os.path.join(run_dir, "metrics.csv")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"run_dir={run_dir!r}: no metrics.csv there")
  env_id = _env_id(run_dir)
  groups: dict[str, list[dict]] = {}
  with open(path, newline="") as f:
    for row in csv.DictReader(f):
      groups.setdefault(row.get("setting") or "", []).append(row)
  floor = floor_of(env_id)
  out = []
  for setting, rows in groups.items():
    s = setting_stats(rows)
    lo, hi = s["last3_ci95"]
    against = (None if floor is None else "above" if lo > floor else
               "below" if hi < floor else "not apart")
    out.append(dict(run=os.path.basename(os.path.normpath(run_dir)), setting=setting,
                    env_id=env_id, floor=floor, against_floor=against, **s))
  return out


def windowed_medians(rows: list[dict], column: str, window: int
                     ) -> tuple[list[int], list[tuple[str, int, int, dict[int, float]]]]:
  """(window starts, [(setting, member, seed, {window start: median})]) of `column` over
  `rows`, members in order; empty cells are skipped."""
  per: dict[int, tuple[str, int, dict[int, list[float]]]] = {}
  starts = set()
  for r in rows:
    m = int(r["member"])
    setting, seed, cells = per.setdefault(m, (r.get("setting") or "", int(r["seed"]), {}))
    if r.get(column, "") in ("", None):
      continue
    start = int(r["env_step"]) // window * window
    starts.add(start)
    cells.setdefault(start, []).append(float(r[column]))
  return sorted(starts), [(setting, m, seed, {k: float(np.median(v)) for k, v in cells.items()})
                          for m, (setting, seed, cells) in sorted(per.items())]


def _number(x: float) -> str:
  """Three significant figures, thousands separated (0.0012, -7.35, 1,505, 6.6e+06)."""
  if x == 0 or 1e-3 <= abs(x) < 1e6:
    digits = max(0, 2 - int(np.floor(np.log10(abs(x))))) if x else 0
    return f"{x:,.{digits}f}"
  return f"{x:.2e}"


def _steps(n: int) -> str:
  """0, 5k, 900k, 1M, 1.1M, 2.25M; other counts as they are."""
  if n >= 1_000_000 and n % 1000 == 0:
    return f"{n / 1e6:g}M"
  return f"{n // 1000}k" if n and n % 1000 == 0 else str(n)


def window_tables(run_dir: str, columns: list[str], window: int) -> list[str]:
  """The markdown lines of one run's windowed tables, one table per column."""
  with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  run = os.path.basename(os.path.normpath(run_dir))
  lines = []
  for column in columns:
    starts, members = windowed_medians(rows, column, window)
    lines.append(f"{run}: {column}, median per {_steps(window)} env steps (window start)")
    lines.append("")
    lines.append("| member (seed) | " + " | ".join(_steps(s) for s in starts) + " |")
    lines.append("|---" * (len(starts) + 1) + "|")
    for setting, m, seed, cells in members:
      label = f"{setting + ' ' if setting else ''}{m} ({seed})"
      lines.append(f"| {label} | " + " | ".join(
          _number(cells[s]) if s in cells else "" for s in starts) + " |")
    lines.append("")
  return lines


def drops(rows: list[dict], start: int, end: int, fraction: float) -> list[dict]:
  """Per member (in order): its level at `start` (the mean of its last LAST evaluations up
  to it), the lowest running mean of LAST evaluations ending in (start, end] and its step,
  the first step that running mean is below `fraction` x the level (None: never), and
  whether it is judged (a level > 0). Empty returns (a frozen member's) are skipped."""
  curves: dict[int, tuple[str, int, list[tuple[int, float]]]] = {}
  for r in rows:
    m = int(r["member"])
    _, _, points = curves.setdefault(m, (r.get("setting") or "", int(r["seed"]), []))
    if r.get("eval_return", "") not in ("", None):
      points.append((int(r["env_step"]), float(r["eval_return"])))
  out = []
  for m, (setting, seed, points) in sorted(curves.items()):
    points.sort()
    steps = [t for t, _ in points]
    values = np.array([x for _, x in points])
    running = [float(values[max(0, k - LAST + 1):k + 1].mean()) for k in range(len(values))]
    before = [k for k, t in enumerate(steps) if t <= start]
    level = running[before[-1]] if before else None
    after = [k for k, t in enumerate(steps) if start < t <= end]
    low = min(after, key=lambda k: running[k]) if after else None
    judged = level is not None and level > 0 and bool(after)
    fell = next((steps[k] for k in after if running[k] < fraction * level), None) \
        if judged else None
    out.append(dict(setting=setting, member=m, seed=seed, level=level,
                    lowest=None if low is None else running[low],
                    lowest_at=None if low is None else steps[low], fell_at=fell,
                    judged=judged))
  return out


def drop_table(run_dir: str, start: int, end: int, fraction: float) -> list[str]:
  """The markdown lines of one run's --drop table and its count."""
  with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
  run = os.path.basename(os.path.normpath(run_dir))
  found = drops(rows, start, end, fraction)
  lines = [f"{run}: level at {_steps(start)} (mean of the last {LAST} evaluations) and the "
           f"lowest running mean of {LAST} in ({_steps(start)}, {_steps(end)}]; fell: below "
           f"{fraction:g} x the level", "",
           f"| member (seed) | level at {_steps(start)} | lowest (at) | fell below "
           f"{fraction:g} x level at |", "|---|---|---|---|"]
  for d in found:
    label = f"{d['setting'] + ' ' if d['setting'] else ''}{d['member']} ({d['seed']})"
    level = "none" if d["level"] is None else _number(d["level"])
    lowest = ("no evaluation" if d["lowest"] is None
              else f"{_number(d['lowest'])} ({_steps(d['lowest_at'])})")
    fell = ("not judged (level <= 0 or no evaluation)" if not d["judged"] else
            _steps(d["fell_at"]) if d["fell_at"] is not None else "no")
    lines.append(f"| {label} | {level} | {lowest} | {fell} |")
  judged = [d for d in found if d["judged"]]
  fell = sum(d["fell_at"] is not None for d in judged)
  reach = max((int(r["env_step"]) for r in rows), default=None)
  lines += ["", f"{fell} of {len(judged)} judged members fell below {fraction:g} x their "
                f"level at {_steps(start)} by {_steps(end)}" + (
                    f" (the run's evaluations reach {_steps(reach)} only)"
                    if reach is not None and reach < end else ""), ""]
  return lines


def _row(s: dict) -> str:
  fmt = lambda x: f"{x:,.0f}"
  lp = ("n/a" if s["log_pi_median"] is None else
        f"{s['log_pi_median']:,.0f} ({s['log_pi_range'][0]:,.0f} to "
        f"{s['log_pi_range'][1]:,.0f})")
  against = "n/a" if s["floor"] is None else f"{s['against_floor']} ({fmt(s['floor'])})"
  return (f"| {s['run']} | {s['setting'] or 'all'} | {', '.join(map(str, s['seeds']))} | "
          f"{fmt(s['final_mean'])} ({', '.join(map(fmt, s['final']))}) | "
          f"{fmt(s['last3_mean'])} [{fmt(s['last3_ci95'][0])}, {fmt(s['last3_ci95'][1])}] | "
          f"{fmt(s['auc_mean'])} | {fmt(s['best_mean'])} | {lp} | {against} |")


OPTIONS = ("--by_window", "--metrics", "--drop", "--fraction")


def _refuse(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _header(run_dir: str) -> list[str]:
  with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
    return next(csv.reader(f), [])


def main(argv: list[str]) -> None:
  dirs = [a for a in argv[1:] if not a.startswith("--")]
  opts = {}
  for a in argv[1:]:
    if a.startswith("--"):
      name, eq, value = a.partition("=")
      if name not in OPTIONS or not eq:
        _refuse(f"unknown argument {a!r}: the options are "
                + ", ".join(f"{o}=..." for o in OPTIONS))
      opts[name] = value
  if not dirs:
    print("usage: python -m experiments.run_stats RUN_DIR [RUN_DIR ...] "
          "[--by_window=STEPS --metrics=COL,... | --drop=FROM,BY [--fraction=F]]",
          file=sys.stderr)
    sys.exit(2)
  for d in dirs:  # every directory checked before any is read (windows need metrics.csv only)
    if not (os.path.isfile(os.path.join(d, "metrics.csv")) and (opts or any(
        os.path.isfile(os.path.join(d, n)) for n in ("summary.json", "run.json")))):
      print(f"run_stats: {d!r} is not a run directory (needs metrics.csv"
            + ("" if opts else ", and summary.json or run.json") + ")", file=sys.stderr)
      sys.exit(2)
  if "--drop" in opts or "--fraction" in opts:
    if "--drop" not in opts or set(opts) - {"--drop", "--fraction"}:
      _refuse("--drop=FROM,BY (with --fraction=F, default 0.5) goes alone")
    parts = opts["--drop"].split(",")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) >= int(
        parts[1]):
      _refuse(f"--drop={opts['--drop']!r}: two env steps FROM,BY with FROM < BY, e.g. "
              "--drop=1000000,1600000")
    try:
      fraction = float(opts.get("--fraction", "0.5"))
    except ValueError:
      fraction = float("nan")
    if not 0 < fraction < 1:
      _refuse(f"--fraction={opts['--fraction']!r}: a number in (0, 1)")
    for d in dirs:
      print("\n".join(drop_table(d, int(parts[0]), int(parts[1]), fraction)))
    return
  if opts:
    if set(opts) != {"--by_window", "--metrics"}:
      _refuse("--by_window=STEPS and --metrics=COL,... go together")
    window = opts["--by_window"]
    if not window.isdigit() or int(window) < 1:
      _refuse(f"--by_window={window!r}: a whole number of env steps, at least 1")
    columns = [c for c in opts["--metrics"].split(",") if c]
    if not columns:
      _refuse("--metrics= names no column")
    for d in dirs:
      header = _header(d)
      missing = [c for c in columns if c not in header]
      if missing:
        _refuse(f"{os.path.join(d, 'metrics.csv')} has no column {', '.join(missing)}; it "
                f"has {', '.join(header)}")
    for d in dirs:
      print("\n".join(window_tables(d, columns, int(window))))
    return
  print(HEADER)
  print("|---" * 9 + "|")
  for d in dirs:
    for s in run_stats(d):
      print(_row(s))


if __name__ == "__main__":
  main(sys.argv)
