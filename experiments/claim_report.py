"""A claim's outputs: verdict.json, returns.csv, curves.csv, table.md and figure.png.

write_outputs(out_dir, claim, arms, data, result) writes them from the arms' curves and the
verdict dict of experiments/claim_analysis.py; each curve is read against what the zero
action scores on its task (experiments/references.py), the floor.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Sequence

import numpy as np

from experiments import claims as C
from experiments import references


def write_outputs(out_dir: str, claim: str, arms: Sequence[C.Arm], data: dict, result: dict,
                  commands: list[str]) -> None:
  """The claim's five files in out_dir; verdict.json is `result` with the commands of its
  runs and the zero action's scores added."""
  os.makedirs(out_dir, exist_ok=True)
  result = dict(result, commands=commands, zero_action=zero_action_refs(arms))
  with open(os.path.join(out_dir, "verdict.json"), "w") as f:
    json.dump(result, f, indent=2, allow_nan=False)
    f.write("\n")
  with open(os.path.join(out_dir, "returns.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["panel", "arm", "seed", "final", "auc", "max", "env_steps"])
    for s in result["arms"].values():
      for i, seed in enumerate(s["seeds"]):
        w.writerow([s["panel"], s["arm"], seed, f"{s['final'][i]:.2f}",
                    f"{s['auc'][i]:.2f}", f"{s['max'][i]:.2f}", s["env_steps"]])
  with open(os.path.join(out_dir, "curves.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["panel", "arm", "seed", "env_step", "eval_return"])
    for a in arms:
      steps, curves = data[C.key(a)]
      for seed, c in curves.items():
        for t, r in zip(steps, c):
          if np.isfinite(r):
            w.writerow([a.panel, a.label, seed, int(t), f"{r:.2f}"])
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write(table_markdown(result))
  plot(os.path.join(out_dir, "figure.png"), claim, arms, data, result)


def zero_action_refs(arms: Sequence[C.Arm]) -> dict:
  """{task: what the zero action scores there} for the tasks of `arms`
  (experiments/references.py): the floor each curve is read against."""
  out = {}
  for t in dict.fromkeys(a.run.task for a in arms):
    if t in references.ZERO_ACTION:
      mean, sd, length = references.ZERO_ACTION[t]
      out[t] = dict(env_id=references.ENV_IDS[t], mean=mean, sd=sd, episode_length=length,
                    episodes=references.EPISODES,
                    env_seeds=[references.FIRST_SEED,
                               references.FIRST_SEED + references.EPISODES - 1])
  return out


def table_markdown(result: dict) -> str:
  lines = [f"Claim `{result['claim']}`, budget `{result['budget']}`: **{result['verdict']}**",
           "", "| arm | seeds | env steps | final (mean ± sd) | per seed | max over evals "
           "(mean) |", "| --- | --- | --- | --- | --- | --- |"]
  for s in result["arms"].values():
    name = f"{s['panel']} {s['arm']}".strip()
    lines.append(f"| {name} | {len(s['seeds'])} | {s['env_steps']:,} | "
                 f"{s['final_mean']:,.0f} ± {s['final_std']:,.0f} | "
                 + ", ".join(f"{x:,.0f}" for x in s["final"]) +
                 f" | {s['max_mean']:,.0f} |")
  if result.get("side_by_side"):
    lines += ["", "Side by side at equal env steps (descriptive, no verdict):", "",
              "| arm | seeds | env steps | final (mean ± sd) | per seed | AUC (mean) | "
              "max over evals (mean) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in result["side_by_side"]:
      name = f"{s['panel']} {s['arm']}".strip()
      lines.append(f"| {name} | {len(s['seeds'])} | {s['env_steps']:,} | "
                   f"{s['final_mean']:,.0f} ± {s['final_std']:,.0f} | "
                   + ", ".join(f"{x:,.0f}" for x in s["final"]) +
                   f" | {np.mean(s['auc']):,.0f} | {s['max_mean']:,.0f} |")
  lines += ["", "| part | at env steps | verdict | effect [95% interval] | p |",
            "| --- | --- | --- | --- | --- |"]
  for p in result["parts"]:
    eff = (f"{p['effect']:,.0f} [{p['ci95'][0]:,.0f}, {p['ci95'][1]:,.0f}]"
           if "effect" in p else f"mean {p['mean']:,.0f} [{p['ci95'][0]:,.0f}, "
           f"{p['ci95'][1]:,.0f}]")
    pval = p.get("p_greater", p.get("p", ""))
    lines.append(f"| {p['part']} | {p['env_steps']:,} | {p['verdict']} | {eff} | "
                 f"{pval if pval == '' else f'{pval:.3f}'} |")
  if result.get("note"):
    lines += ["", result["note"]]
  floors = result.get("zero_action")
  if floors:
    episodes = next(iter(floors.values()))["episodes"]
    scores = ", ".join(f"{r['env_id']} {round(r['mean']):,} ± {round(r['sd']):,}"
                       for r in floors.values())
    lines += ["", "For reference, a policy that does nothing (the zero action; "
              f"experiments/references.py, {episodes} episodes) scores {scores}."]
  return "\n".join(lines) + "\n"


def plot(path: str, claim: str, arms: Sequence[C.Arm], data: dict, result: dict) -> None:
  import matplotlib.pyplot as plt
  fig = figure(claim, arms, data, result)
  fig.savefig(path)
  plt.close(fig)


# A panel with more arms than this draws each arm's mean alone: beyond a few arms the
# min-max bands and per-seed lines cover one another (the settings search on Walker2d has
# nine); its table and verdict.json keep every seed.
DETAILED_ARMS = 4


def figure(claim: str, arms: Sequence[C.Arm], data: dict, result: dict):
  """The claim's figure (one panel per task): each arm's mean over seeds, min-max band and
  per-seed lines (a panel of more than DETAILED_ARMS arms: the means alone, its legend
  beside it); on each task panel the zero action's return (the floor) and, for the tasks
  claim, the bar."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  panels = list(dict.fromkeys(a.panel for a in arms))
  crowded = {p for p in panels if sum(a.panel == p for a in arms) > DETAILED_ARMS}
  fig, axes = plt.subplots(1, len(panels), dpi=110, squeeze=False, figsize=(
      5.2 * len(panels) + 2.8 * len(crowded), 4.0))
  colors = plt.cm.tab10(np.arange(10))
  for ax, panel in zip(axes[0], panels):
    for i, a in enumerate(x for x in arms if x.panel == panel):
      steps, curves = data[C.key(a)]
      mat = np.array(list(curves.values()))
      c = colors[i % 10]
      mean = np.nanmean(mat, axis=0)
      if panel not in crowded:
        for row in mat:
          ax.plot(steps, row, color=c, lw=0.6, alpha=0.45)
        ax.fill_between(steps, np.nanmin(mat, axis=0), np.nanmax(mat, axis=0), color=c,
                        alpha=0.15, lw=0)
      s = result["arms"][C.key(a)]
      ax.plot(steps, mean, color=c, lw=2.0, label=f"{a.label} ({len(mat)} seeds, final "
                                                   f"{s['final_mean']:,.0f})")
    tasks = {a.run.task for a in arms if a.panel == panel}
    task = tasks.pop() if len(tasks) == 1 else None
    ref = result.get("zero_action", {}).get(task)
    if ref is not None:   # the floor: what doing nothing scores on this task
      ax.axhline(ref["mean"], color="0.35", ls=":", lw=1.0,
                 label=f"zero action (does nothing): {round(ref['mean']):,}")
    if claim == "tasks" and task in C.THRESHOLDS:
      ax.axhline(C.THRESHOLDS[task], color="k", ls="--", lw=0.8,
                 label=f"the bar: {C.THRESHOLDS[task]:,.0f}")
    ends = {int(data[C.key(a)][0][-1]) for a in arms if a.panel == panel}
    for end in sorted(ends)[:-1] if claim != "tasks" else ():   # tasks: no comparison
      ax.axvline(end, color="gray", ls="--", lw=0.8)
      ax.text(end, ax.get_ylim()[0], " the shorter arm compared here", fontsize=7,
              color="gray", va="bottom")
    ax.set_title(panel or claim)
    ax.set_xlabel("env steps")
    ax.set_ylabel("deterministic evaluation return")
    ax.grid(alpha=0.3)
    if panel in crowded:
      ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
      ax.legend(fontsize=7, loc="upper left")
  how = (["mean over seeds (thick), min-max band, each seed thin"]
         if len(crowded) < len(panels) else []) + (
      [f"a panel of more than {DETAILED_ARMS} arms: the means over seeds alone"]
      if crowded else [])
  when = ([f"up to {result['up_to']:,} env steps"] if result.get("up_to") else []) + (
      ["INTERIM: runs under way"] if result.get("interim") else [])
  fig.suptitle(f"{claim} ({result['budget']} budget"
               + "".join(f", {w}" for w in when) + f"): {result['verdict']}\n"
               + "; ".join(how), fontsize=9)
  fig.tight_layout()
  return fig
