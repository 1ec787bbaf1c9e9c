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


def main(argv: list[str]) -> None:
  if len(argv) < 2:
    print("usage: python -m experiments.run_stats RUN_DIR [RUN_DIR ...]", file=sys.stderr)
    sys.exit(2)
  for d in argv[1:]:  # every directory checked before any is read
    if not (os.path.isfile(os.path.join(d, "metrics.csv")) and
            any(os.path.isfile(os.path.join(d, n)) for n in ("summary.json", "run.json"))):
      print(f"run_stats: {d!r} is not a run directory (needs metrics.csv, and summary.json "
            "or run.json)", file=sys.stderr)
      sys.exit(2)
  print(HEADER)
  print("|---" * 9 + "|")
  for d in argv[1:]:
    for s in run_stats(d):
      print(_row(s))


if __name__ == "__main__":
  main(sys.argv)
