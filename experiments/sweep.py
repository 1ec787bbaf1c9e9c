r"""A grid of shape-changing settings as separate runs, drawn together in one figure.

    python -m experiments.sweep --flagfile=experiments/flags/sweep_k.flags
    python -m experiments.sweep --env_id=Pendulum-v1 --num_seeds=3 \
        --grid num_components=1,2,4 --grid hidden_sizes=64x64,128x128 --parallel=2 \
        --run_dir=runs/pendulum-k-hidden

Settings that change array shapes or the graph (K = num_components, G = grad_steps,
hidden_sizes, batch_size, buffer_size, activation, num_q, policy_gradient, auto_alpha, ...)
cannot share one vmapped state, so every point of the `--grid` (the product of all `--grid`
flags, first one outermost) is its own `python -m experiments.run` process with its own
run directory `<run_dir>/<name=value,...>`. Every other flag of experiments.run applies to
all of them (including `--num_seeds` and `--sweep`, which still run inside each process).
`--parallel=N` runs N of them at once (default 1: one after another); on a CPU each process
uses every core, so N > 1 pays only when there are more cores (or devices) than one run
keeps busy.

List values (hidden_sizes) use `x` between layers: `--grid hidden_sizes=64x64,256x256`.
Per-member hyperparameters (reward_scale, alpha, tau, gamma, reg, learning rates) are
refused here: give them to `--sweep`, which trains them in one process.

The sweep directory holds `sweep_flags.txt` (a flagfile reproducing the sweep), `grid.json`,
`curves.png` (one curve per grid point, or per (grid point, --sweep setting): the mean over
seeds with a min-max band), `summary.json` (the points ranked by mean final return) and
one sub run directory per point. Running the same command again resumes every unfinished
point (and says so for finished ones); a changed grid is refused. Exit status 0 when every
point succeeded, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

from absl import flags
from absl import logging

from experiments import cli
from experiments import run
from sac_jax import settings

FLAGS = flags.FLAGS

flags.DEFINE_multi_string("grid", [], "NAME=V1,V2,...: a shape-changing setting of "
                          "experiments.run to vary over separate runs (repeat for a "
                          "product grid); list values use x between items: 64x64")
flags.DEFINE_integer("parallel", 1, "grid points run at once (separate processes)")

ALIASES = {"K": "num_components", "G": "grad_steps", "hidden": "hidden_sizes"}
# run.py flags that make no sense as a grid axis.
NOT_GRIDDABLE = ("run_dir", "sweep", "log_every_s", "checkpoint_every", "max_to_keep",
                 "keep_every",
                 "total_env_steps", "eval_every", "eval_episodes", "num_devices")
GRID_FILE = "grid.json"
FLAGS_FILE = "sweep_flags.txt"


def parse_grid(specs) -> list[tuple[str, list[tuple[str, Any]]]]:
  """`--grid` values -> [(flag name, [(raw text, parsed value)])]. Raises UsageError."""
  names = set(run.our_flags())
  out = []
  for spec in specs:
    name, eq, raw = spec.partition("=")
    name = ALIASES.get(name.strip(), name.strip())
    if not eq or not name:
      raise run.UsageError(f"--grid {spec!r}: expected NAME=V1,V2,... e.g. "
                           "--grid num_components=1,2,4")
    if name in settings.per_member("sac") + settings.per_member("ddpg"):
      raise run.UsageError(
          f"--grid {name}: {name} is a per-member hyperparameter; sweep it inside one "
          f"process with --sweep {name}={raw} (cheaper than separate runs)")
    if name not in names or name in NOT_GRIDDABLE:
      raise run.UsageError(
          f"--grid {name}: not a setting to vary over runs; use a flag of "
          "experiments.run such as num_components (K), grad_steps (G), hidden_sizes, "
          "batch_size, buffer_size, num_q, policy_gradient, env_id")
    if any(n == name for n, _ in out):
      raise run.UsageError(f"--grid {name} is given twice; give each name once")
    items = [x.strip() for x in raw.split(",")]
    if not raw.strip() or any(not x for x in items):
      raise run.UsageError(f"--grid {spec!r}: empty value list; give one or more values")
    if len(set(items)) != len(items):
      raise run.UsageError(f"--grid {name}={raw}: a value is repeated")
    values = []
    flag = FLAGS[name]
    for x in items:
      text = x.replace("x", ",") if name == "hidden_sizes" else x
      try:
        values.append((x, flag.parser.parse(text)))
      except (ValueError, TypeError) as e:
        raise run.UsageError(f"--grid {name}: cannot parse {x!r} ({e})") from None
    out.append((name, values))
  if not out:
    raise run.UsageError("no --grid given: e.g. --grid num_components=1,2,4")
  return out


def _label(point) -> str:
  text = ",".join(f"{name}={raw}" for name, (raw, _) in point)
  return re.sub(r"[^A-Za-z0-9_.=,+-]+", "_", text)


def _point_flags(point, sub_dir: str) -> tuple[dict, str]:
  """The run flags of one grid point (validated) and a flagfile text for it."""
  saved = {n: FLAGS[n].value for n in run.our_flags()}
  try:
    for name, (_, value) in point:
      FLAGS[name].value = value
    FLAGS["run_dir"].value = sub_dir
    v = run.flag_values()
    run.validate(v)
    return v, run.flagfile_text(v)
  finally:
    for n, x in saved.items():
      FLAGS[n].value = x


def draw(sweep_dir: str, points: list[tuple[str, str]]) -> dict:
  """curves.png and summary.json of the sweep from its sub runs' files."""
  from experiments import plot
  from sac_jax import rundir
  groups, ranked = {}, []
  for label, sub in points:
    csv_path = os.path.join(sub, rundir.METRICS)
    if os.path.exists(csv_path) and os.path.getsize(csv_path):
      groups.update(plot.read_groups(csv_path, prefix=label))
    s_path = os.path.join(sub, rundir.SUMMARY)
    if not os.path.exists(s_path):
      ranked.append(dict(point=label, run_dir=sub, final_return_mean=None))
      continue
    s = json.load(open(s_path))
    for entry in s.get("settings") or [dict(
        setting=None, final_return_mean=s["final_return_mean"],
        final_return_min=s["final_return_min"], final_return_max=s["final_return_max"],
        seeds=[m["seed"] for m in s["members"]])]:
      ranked.append(dict(point=label, setting=entry.get("setting"), run_dir=sub,
                         complete=s["complete"], env_steps=s["env_steps"],
                         final_return_mean=entry["final_return_mean"],
                         final_return_min=entry["final_return_min"],
                         final_return_max=entry["final_return_max"],
                         seeds=entry["seeds"]))
  ranked.sort(key=lambda e: (e["final_return_mean"] is None,
                             -(e["final_return_mean"] or 0.0)))
  for r, e in enumerate(ranked, 1):
    e["rank"] = r
  plot.plot_groups(groups, os.path.join(sweep_dir, rundir.CURVES),
                   title=os.path.basename(os.path.normpath(sweep_dir)))
  summary = dict(points=[p for p, _ in points], ranking=ranked)
  rundir.write_json(os.path.join(sweep_dir, rundir.SUMMARY), summary)
  return summary


def main(argv):
  logging.set_verbosity(logging.WARNING)  # keep stderr for errors
  if len(argv) > 1:
    raise run.UsageError(f"unexpected argument(s) {argv[1:]!r}; flags look like "
                         "--name=value")
  if FLAGS.parallel < 1:
    raise run.UsageError(f"parallel={FLAGS.parallel}: must be >= 1")
  grid = parse_grid(FLAGS.grid)
  sweep_dir = FLAGS.run_dir or run.default_run_dir(FLAGS.env_id + "-grid")
  points = [tuple(zip([n for n, _ in grid], combo))
            for combo in itertools.product(*(vals for _, vals in grid))]
  jobs = []
  for point in points:  # every point validated before anything runs
    label = _label(point)
    sub = os.path.join(sweep_dir, label)
    _, text = _point_flags(point, sub)
    jobs.append((label, sub, text))

  from sac_jax import rundir
  try:
    rundir.check_writable(sweep_dir)
  except OSError as e:
    raise run.UsageError(f"run_dir={sweep_dir!r} is not writable: {e.strerror or e}") from None
  desc = dict(grid=[[n, [raw for raw, _ in vals]] for n, vals in grid],
              points=[label for label, _, _ in jobs])
  grid_path = os.path.join(sweep_dir, GRID_FILE)
  if os.path.exists(grid_path):
    old = json.load(open(grid_path))
    if old != desc:
      raise run.UsageError(f"cannot resume {sweep_dir}: its grid is {old['grid']} but now "
                           f"{desc['grid']}; rerun with --flagfile="
                           f"{os.path.join(sweep_dir, FLAGS_FILE)} or choose a new --run_dir")
  rundir.write_json(grid_path, desc)
  saved_run_dir = FLAGS.run_dir
  FLAGS.run_dir = sweep_dir
  text = run.flagfile_text(run.flag_values()).replace(
      "python -m experiments.run", "python -m experiments.sweep")
  text += "".join(f"--grid={n}={','.join(raw for raw, _ in vals)}\n" for n, vals in grid)
  text += f"--parallel={FLAGS.parallel}\n"
  FLAGS.run_dir = saved_run_dir
  rundir.atomic_write(os.path.join(sweep_dir, FLAGS_FILE), text)

  print(f"[sweep] {len(jobs)} run(s) in {sweep_dir}, {FLAGS.parallel} at a time: "
        + "; ".join(label for label, _, _ in jobs), flush=True)
  pending = list(jobs)
  running: dict[str, tuple[subprocess.Popen, float]] = {}
  results: dict[str, int] = {}
  stop = {"signum": None}

  def forward(signum, frame):
    stop["signum"] = signum
    for proc, _ in running.values():
      if proc.poll() is None:
        proc.send_signal(signum)

  old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
  t0 = time.perf_counter()
  try:
    while pending or running:
      while pending and len(running) < FLAGS.parallel and stop["signum"] is None:
        label, sub, ftext = pending.pop(0)
        os.makedirs(sub, exist_ok=True)
        path = os.path.join(sub, "grid_point.flags")
        rundir.atomic_write(path, ftext)
        # Its own session: a Ctrl-C reaches it once, forwarded by `forward` (a second
        # SIGINT would make experiments.run exit without its checkpoint).
        proc = subprocess.Popen([sys.executable, "-m", "experiments.run",
                                 f"--flagfile={path}"], start_new_session=True)
        running[label] = (proc, time.perf_counter())
        print(f"[sweep] started {label}", flush=True)
      if stop["signum"] is not None and not running:
        break
      time.sleep(0.2)
      for label in list(running):
        proc, start = running[label]
        if proc.poll() is not None:
          del running[label]
          results[label] = proc.returncode
          print(f"[sweep] finished {label}: exit {proc.returncode} in "
                f"{time.perf_counter() - start:.0f}s", flush=True)
          draw(sweep_dir, [(l, s) for l, s, _ in jobs])
  finally:
    for s, h in old.items():
      signal.signal(s, h)
  summary = draw(sweep_dir, [(l, s) for l, s, _ in jobs])
  failed = [l for l, _, _ in jobs if results.get(l) != 0]
  best = summary["ranking"][0] if summary["ranking"] else None
  print(f"[sweep] done in {time.perf_counter() - t0:.0f}s: {len(jobs) - len(failed)} of "
        f"{len(jobs)} run(s) succeeded" +
        (f"; best: {best['point']}" + (f" {best['setting']}" if best.get("setting") else "")
         + f" (final return mean {run_num(best['final_return_mean'])})" if best else "") +
        f"; curves: {os.path.join(sweep_dir, 'curves.png')}", flush=True)
  if stop["signum"] is not None:
    print(f"[sweep] interrupted by {signal.Signals(stop['signum']).name}: rerun the same "
          "command to resume", file=sys.stderr, flush=True)
    return 128 + stop["signum"]
  if failed:
    print(f"[sweep] failed: {', '.join(failed)} (see their output above)", file=sys.stderr,
          flush=True)
    return 1
  return 0


def run_num(x) -> str:
  return "n/a" if x is None else f"{x:.1f}"


if __name__ == "__main__":
  cli.run(main)
