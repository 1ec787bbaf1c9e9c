"""Finished reproduction runs kept in the repository, so a claim outlives its machine.

A run directory (metrics.csv, checkpoints) lives on the machine that trained it. Once a run
is complete, `experiments.reproduce` copies what its analysis needs into the archive
(default docs/reproduction/runs/<budget>/):

    <run>.csv    seed, env_step, eval_return: every evaluation of every seed
    <run>.json   the run's name and runner, its full configuration (the command's flags
                 with every --flagfile expanded), the command, the seeds and target steps

A later `reproduce` of any claim that uses the run, on any machine, finds it here: the run
is not trained again and the analysis reads the archived curve. An archived run is used only
while its configuration equals the one the claim would train now: if a flagfile changed
since (a recalibrated reward scale), the archive is ignored and the flags that differ are
named, so a stale curve never enters a verdict.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Sequence

import numpy as np

# Flags that say where and how often a run writes, not what it trains; and seed and
# num_seeds: member i trains seed + i whatever their number, the archive lists the seeds it
# holds and lookup checks the seeds a claim needs (so seeds trained by another process, a
# later --first_seed, join the same archived run: `add`).
NOT_CONFIG = frozenset({"run_dir", "log_every_s", "checkpoint_every", "max_to_keep",
                        "keep_every", "num_seeds", "seed"})


def resolve(argv: Sequence[str], cwd: str) -> dict[str, str]:
  """The flags a command line sets, with every --flagfile expanded (absl's order: a later
  setting wins), as {name: value}; `--x` is "true" and `--nox` is x = "false"."""
  out: dict[str, str] = {}

  def visit(args: Sequence[str], where: str, depth: int) -> None:
    if depth > 20:
      raise ValueError(f"--flagfile nesting deeper than 20 under {where}")
    for a in args:
      a = a.strip()
      if not a or a.startswith(("#", "//")):
        continue
      if not a.startswith("-"):
        raise ValueError(f"{a!r} in {where}: not a flag")
      name, eq, value = a.lstrip("-").partition("=")
      if name == "flagfile":
        path = value if os.path.isabs(value) else os.path.join(cwd, value)
        with open(path) as f:
          visit(f.read().splitlines(), path, depth + 1)
      elif eq:
        out[name] = value
      elif name.startswith("no"):
        out[name[2:]] = "false"
      else:
        out[name] = "true"

  visit(argv, "the command line", 0)
  for name in NOT_CONFIG:
    out.pop(name, None)
  return out


def paths(archive: str, run: str) -> tuple[str, str]:
  return os.path.join(archive, f"{run}.csv"), os.path.join(archive, f"{run}.json")


def write(archive: str, run: str, runner: str, config: dict[str, str], command: str,
          target: int, curves: dict[int, list[tuple[int, float]]], source: str,
          parts: list[dict] | None = None) -> None:
  """Archive a complete run: {seed: [(env_step, eval_return), ...]} and its configuration
  (in place of what the archive held for it; `add` keeps seeds archived before).

  Written to temporary names first and renamed, so a kill leaves the old archive or the
  new one, never half of one."""
  os.makedirs(archive, exist_ok=True)
  csv_path, json_path = paths(archive, run)
  with open(csv_path + ".tmp", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["seed", "env_step", "eval_return"])
    for seed in sorted(curves):
      for step, ret in sorted(curves[seed]):
        w.writerow([seed, step, "" if not np.isfinite(ret) else repr(float(ret))])
  meta = dict(run=run, runner=runner, seeds=sorted(curves), target_env_steps=target,
              config=dict(sorted(_config(config).items())), command=command, source=source)
  if parts:
    meta["parts"] = parts
  with open(json_path + ".tmp", "w") as f:
    json.dump(meta, f, indent=1)
    f.write("\n")
  os.replace(csv_path + ".tmp", csv_path)
  os.replace(json_path + ".tmp", json_path)


def add(archive: str, run: str, runner: str, config: dict[str, str], command: str,
        target: int, curves: dict[int, list[tuple[int, float]]], source: str) -> list[int]:
  """Archive a complete run's seeds: beside the seeds already archived for this run when
  they were trained with the same configuration to the same target (more seeds for an arm,
  trained later: their curves are added, a seed archived again is replaced), else in place
  of them (`write`). Returns the seeds the archive then holds; the .json's `parts` lists
  each command with the seeds of the archive it trained."""
  csv_path, json_path = paths(archive, run)
  part = dict(seeds=sorted(curves), command=command, source=source)
  if os.path.exists(csv_path) and os.path.exists(json_path):
    with open(json_path) as f:
      meta = json.load(f)
    if (meta["runner"] == runner and meta["target_env_steps"] == target
        and _config(meta["config"]) == _config(config)):
      old = read_curves(csv_path)
      merged = {s: sorted(d.items()) for s, d in old.items() if s not in curves}
      merged.update(curves)
      parts = [dict(p, seeds=kept) for p in meta.get("parts", [dict(
                   seeds=meta["seeds"], command=meta["command"], source=meta["source"])])
               if (kept := sorted(set(p["seeds"]) - set(curves)))] + [part]
      # The top-level command and source: the first command that still gives seeds.
      write(archive, run, runner, config, parts[0]["command"], target, merged,
            source=parts[0]["source"], parts=parts)
      return sorted(merged)
  write(archive, run, runner, config, command, target, curves, source)
  return sorted(curves)


def _config(config: dict[str, str]) -> dict[str, str]:
  """What a configuration trains (archives written before `seed` joined NOT_CONFIG list it)."""
  return {k: v for k, v in config.items() if k not in NOT_CONFIG}


def read_curves(csv_path: str) -> dict[int, dict[int, float]]:
  """{seed: {env_step: return}} from a metrics.csv or an archived <run>.csv (an empty
  return, a diverged member's evaluation, is NaN)."""
  by_seed: dict[int, dict[int, float]] = {}
  with open(csv_path, newline="") as f:
    for row in csv.DictReader(f):
      r = row.get("eval_return")
      by_seed.setdefault(int(row["seed"]), {})[int(row["env_step"])] = (
          float(r) if r not in ("", None) else np.nan)
  return by_seed


def lookup(archive: str | None, run: str, config: dict[str, str], seeds: Sequence[int],
           target: int) -> tuple[str | None, str]:
  """(the archived curve's path, "") when the archive holds this run complete for these
  seeds with this configuration; else (None, why not: "" when nothing is archived)."""
  if not archive:
    return None, ""
  csv_path, json_path = paths(archive, run)
  if not (os.path.exists(csv_path) and os.path.exists(json_path)):
    return None, ""
  with open(json_path) as f:
    meta = json.load(f)
  old, config = _config(meta["config"]), _config(config)
  diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
  if diff:
    return None, ("archived with other flags (" + ", ".join(
        f"{k}: {old.get(k, 'unset')} there, {config.get(k, 'unset')} now" for k in diff)
        + "): not used")
  curves = read_curves(csv_path)
  short = [s for s in seeds if max(curves.get(s, {}), default=0) < target]
  if short:
    return None, (f"archived without seed(s) {', '.join(map(str, short))} at "
                  f"{target:,} env steps: not used")
  return csv_path, ""
