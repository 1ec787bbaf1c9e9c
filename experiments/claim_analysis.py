"""What each claim tests: from the arms' curves to the verdict dict (verdict.json).

analyze(claim, arms, data, budget) summarizes every arm at its own horizon, then applies the
claim's rule (RULES: one function per claim), which returns its parts, each a test of
experiments/verdict.py between arms met at equal env steps, and where the claim is not
the plain combination of its parts, its own verdict. Per seed: final return = the mean of
the last LAST_EVALS evaluations, AUC = the mean over all evaluations, max = the best one.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import numpy as np

from experiments import claims as C
from experiments import run_archive
from experiments import verdict as V

LAST_EVALS = 3


def read_arm(path: str, seeds: Sequence[int] | None = None
             ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
  """(env steps [T], {seed: returns [T]}) of a run from its metrics.csv, or from an archived
  <run>.csv (a path to a file; a directory means its metrics.csv). Missing: NaN. `seeds`:
  only these (an archive may hold more seeds than a claim asks for)."""
  if os.path.isdir(path):
    path = os.path.join(path, "metrics.csv")
  by_seed = run_archive.read_curves(path)
  if seeds is not None:
    by_seed = {s: d for s, d in by_seed.items() if s in set(seeds)}
  steps = np.array(sorted({s for d in by_seed.values() for s in d}), np.int64)
  return steps, {s: np.array([d.get(int(t), np.nan) for t in steps])
                 for s, d in sorted(by_seed.items())}


def arm_stats(a: C.Arm, steps: np.ndarray, curves: dict) -> dict:
  """An arm's per-seed final, AUC and max, and their summaries, at the curves' horizon."""
  # A member whose curve stops being finite (it diverged) is summarized by its finite
  # evaluations (its final return: the last finite ones): it is never dropped.
  per_seed = {s: V.summarize_curve(c[np.isfinite(c)], LAST_EVALS)
              for s, c in curves.items() if np.isfinite(c).any()}
  finals = [p["final"] for p in per_seed.values()]
  return dict(arm=a.label, panel=a.panel, run=a.run.name, seeds=sorted(per_seed),
              env_steps=int(steps[-1]), final=finals,
              auc=[p["auc"] for p in per_seed.values()],
              max=[p["max"] for p in per_seed.values()],
              final_mean=float(np.mean(finals)),
              final_std=float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0,
              max_mean=float(np.mean([p["max"] for p in per_seed.values()])))


def cut_at(steps: np.ndarray, curves: dict[int, np.ndarray], up_to: int | None
           ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
  """A curve's evaluations at or before `up_to` env steps (None: all of them)."""
  if up_to is None:
    return steps, curves
  keep = steps <= up_to
  return steps[keep], {s: c[keep] for s, c in curves.items()}


def interim_runs(statuses: Sequence[dict], up_to: int | None = None) -> list[dict]:
  """The runs analyzed before they finished (reproduce.run_status of each run read from its
  run directory): {run, reached: the least env steps over its seeds, target}. A run past
  `up_to` on every seed is not interim there: its curve up to that step is final (a run is
  a function of its seeds)."""
  out = []
  for st in statuses:
    reached = min(st["reached"].values())
    if st["state"] != "complete" and (up_to is None or reached < up_to):
      out.append(dict(run=st["run"], reached=reached, target=st["target"]))
  return out


class Arms:
  """The arms of one analysis: each arm's statistics at its own horizon (`stats`, by key),
  and the comparisons a claim's rule makes of them."""

  def __init__(self, arms: Sequence[C.Arm], data: dict[str, tuple]):
    self.of = {C.key(a): a for a in arms}
    self.data = data
    self.stats = {k: arm_stats(self.of[k], *data[k]) for k in self.of}
    self.panels = list(dict.fromkeys(a.panel for a in arms))

  def find(self, panel: str, label: str) -> str | None:
    """The key of the arm `label` on `panel`, or None: a claim run on a subset of its arms
    (--arms) gets the parts whose arms are all there."""
    k = C.key(C.Arm(label, None, panel))
    return k if k in self.stats else None

  def in_panel(self, panel: str) -> list[str]:
    return [k for k in self.stats if self.stats[k]["panel"] == panel]

  def common(self, *keys: str) -> list[dict]:
    """The arms' statistics with every curve cut at the shortest one's horizon."""
    horizon = min(int(self.data[k][0][-1]) for k in keys)
    return [arm_stats(self.of[k], *cut_at(*self.data[k], horizon)) for k in keys]

  def part(self, name: str, test: Callable[..., dict], keys: Sequence[str],
           stat: str = "final", **kw) -> dict:
    """A part: `test` (experiments/verdict.py) on the arms' per-seed `stat`, at equal env
    steps (recorded as `env_steps`, with each arm's mean there, `means`)."""
    cut = self.common(*keys)
    return dict(part=name, **test(*(c[stat] for c in cut), **kw),
                env_steps=cut[0]["env_steps"],
                means=[float(np.mean(c[stat])) for c in cut])

  def bar(self, task: str, k: str, what: str) -> dict:
    """The tasks bar: arm k's mean final return >= the task's bar, judged by the bootstrap
    95% interval of the mean (above it: holds; below it: does not hold), at the arm's own
    horizon."""
    s, bar = self.stats[k], C.THRESHOLDS[task]
    lo, hi = V.mean_ci95(s["final"])
    v = V.HOLDS if lo >= bar else V.FAILS if hi < bar else V.INCONCLUSIVE
    return dict(part=f"{task}: {what} mean final >= {bar:g}", verdict=v,
                mean=s["final_mean"], ci95=[float(lo), float(hi)],
                meets_bar=bool(s["final_mean"] >= bar), env_steps=s["env_steps"])


# Each claim's rule: {"parts": [...]}, and its own "verdict" (and "note", "best_arm") where
# the claim is not the combination of its parts (V.combine).

def _tasks(a: Arms) -> dict:
  """Each task's paper configuration against the task's bar, alone."""
  return dict(parts=[a.bar(t, f"{t}/paper", "paper config") for t in a.panels
                     if f"{t}/paper" in a.stats])


def _settings(a: Arms) -> dict:
  """A search: every arm against the bar, every variant above the default; it succeeds
  when one variant meets the bar, fails when none can."""
  parts, bars = [], []
  for t in a.panels:
    ks = a.in_panel(t)
    for k in ks:
      parts.append(a.bar(t, k, a.stats[k]["arm"]))
      if a.stats[k]["arm"] != "default":
        bars.append(parts[-1]["verdict"])
    default = a.find(t, "default")
    for k in ks:
      if default and k != default:
        parts.append(a.part(f"{t}: {a.stats[k]['arm']} final > default final",
                            V.directional, (k, default)))
  if bars:
    return dict(parts=parts, verdict=(
        V.HOLDS if V.HOLDS in bars else
        V.FAILS if all(v == V.FAILS for v in bars) else V.INCONCLUSIVE))
  if parts:
    return dict(parts=parts, verdict=V.INCONCLUSIVE, note=(
        "no --setting arm in this analysis: the default's bar alone, which the tasks "
        "claim tests"))
  return dict(parts=parts)


def _sac_vs_ddpg(a: Arms) -> dict:
  """SAC above DDPG by the final return and by the AUC, per task and pair of arms."""
  parts = []
  for t in a.panels:
    for s_label, d_label in (("SAC", "DDPG G=1"), ("SAC", "DDPG G=4"),
                             ("SAC G=4", "DDPG G=4")):
      sac, d = a.find(t, s_label), a.find(t, d_label)
      if sac is None or d is None:
        continue
      for stat in ("final", "auc"):
        parts.append(a.part(f"{t}: {s_label} {stat} > {d_label} {stat}",
                            V.directional, (sac, d), stat))
  return dict(parts=parts)


def _mixture_gradients(a: Arms) -> dict:
  """MRP above the likelihood ratio; MRP within 15% of the K = 1 reparameterized Gaussian."""
  parts = []
  for t in a.panels:
    lr, mrp, k1 = (a.find(t, x) for x in ("K=4 likelihood ratio",
                                           "K=4 marginalized reparam.",
                                           "K=1 reparameterized"))
    if mrp and lr:
      parts.append(a.part(f"{t}: K=4 MRP final > K=4 likelihood ratio final",
                          V.directional, (mrp, lr)))
    if mrp and k1:
      k1_final = a.common(k1, mrp)[0]["final_mean"]
      parts.append(a.part(f"{t}: K=4 MRP within 15% of K=1 reparameterized (parity)",
                          V.within, (k1, mrp), margin=0.15 * abs(k1_final)))
  return dict(parts=parts)


def _overlap(a: Arms) -> dict:
  """The overlapped loop's final and AUC agree with the synchronous loop's within 15%."""
  parts = []
  for t in a.panels:
    sync, over = a.find(t, "synchronous"), a.find(t, "overlap")
    for stat in ("final", "auc") if sync and over else ():
      margin = 0.15 * abs(float(np.mean(a.common(sync, over)[0][stat])))
      parts.append(a.part(f"{t}: overlap {stat} agrees with synchronous {stat} within 15%",
                          V.equivalent, (over, sync), stat, margin=margin))
  return dict(parts=parts)


def not_below(ours: Sequence[float], peer: Sequence[float], rel_margin: float) -> dict:
  """Verdict on "ours is not below peer beyond seed noise" (effect = mean(peer) -
  mean(ours), margin = rel_margin x |mean(peer)|): does not hold if the peer is higher
  (V.directional(peer, ours) holds: one-sided permutation p < 0.05, however small the gap);
  else holds if the bootstrap interval's upper end is below the margin (V.within: ours at
  most that much lower, or higher); else inconclusive at this budget."""
  margin = rel_margin * abs(float(np.mean(peer)))
  higher = V.directional(peer, ours)
  near = V.within(peer, ours, margin)
  verdict = (V.FAILS if higher["verdict"] == V.HOLDS else
             V.HOLDS if near["verdict"] == V.HOLDS else V.INCONCLUSIVE)
  return dict(near, verdict=verdict, peer_higher=higher["verdict"],
              test=f"peer higher: {higher['test']}; the gap within the margin: "
                   f"{near['test']}")


def _parity(a: Arms) -> dict:
  """sac_jax modern not below stable-baselines-jax beyond seed noise (final, AUC)."""
  parts = []
  for t in a.panels:
    ours, peer = a.find(t, "sac_jax modern"), a.find(t, "stable-baselines-jax")
    for stat in ("final", "auc") if ours and peer else ():
      parts.append(a.part(
          f"{t}: sac_jax modern {stat} not below stable-baselines-jax {stat} beyond "
          "seed noise (effect: peer - sac_jax; margin 15% of the peer's mean)",
          not_below, (ours, peer), stat, rel_margin=0.15))
  return dict(parts=parts)


def _seeds(a: Arms) -> dict:
  """SAC's spread of final returns across seeds below DDPG's."""
  sac, ddpg = a.find("", "SAC"), a.find("", "DDPG")
  return dict(parts=[a.part("SAC's spread of final returns across seeds < DDPG's",
                            V.spread_smaller, (sac, ddpg))] if sac and ddpg else [])


def _hard(a: Arms) -> dict:
  """Soft above hard by more than 20% of the soft arm's mean."""
  soft, hard = a.find("", "soft (alpha=1)"), a.find("", "hard (alpha=0)")
  if not (soft and hard):
    return dict(parts=[])
  margin = 0.2 * abs(a.common(soft, hard)[0]["final_mean"])
  return dict(parts=[a.part("soft final > hard final (margin: 20% of soft's mean)",
                            V.directional, (soft, hard), margin=margin)])


def _grad_steps(a: Arms) -> dict:
  """Each G above the next smaller one, per panel."""
  parts = []
  for t in a.panels:
    keys = a.in_panel(t)
    for lo_k, hi_k in zip(keys[:-1], keys[1:]):
      parts.append(a.part(
          f"{t + ': ' if t else ''}{a.stats[hi_k]['arm']} final > "
          f"{a.stats[lo_k]['arm']} final", V.directional, (hi_k, lo_k)))
  return dict(parts=parts)


def _components(a: Arms) -> dict:
  """Near-equivalence among all K, at the horizon they share: holds when the best arm is
  K = 2 or 4, or K = 2 or K = 4 is within 15% of the best arm's mean final return."""
  if not a.stats:
    return dict(parts=[])
  cut = dict(zip(a.stats, a.common(*a.stats)))
  best = max(cut, key=lambda k: cut[k]["final_mean"])
  margin = 0.15 * abs(cut[best]["final_mean"])
  parts = [a.part(f"{a.stats[k]['arm']} within 15% of the best ({a.stats[best]['arm']})",
                  V.within, (best, k), margin=margin) for k in cut if k != best]
  out = dict(parts=parts)
  verdicts = [p["verdict"] for p in parts if p["part"].startswith(("K=2 ", "K=4 "))]
  if not parts:
    pass   # one arm: nothing to compare (analyze says so)
  elif a.stats[best]["arm"] in ("K=2", "K=4"):
    out["verdict"] = V.HOLDS
  else:
    out["verdict"] = (V.HOLDS if V.HOLDS in verdicts else
                      V.FAILS if verdicts and all(v == V.FAILS for v in verdicts) else
                      V.INCONCLUSIVE)
  out["best_arm"] = a.stats[best]["arm"]
  return out


RULES: dict[str, Callable[[Arms], dict]] = dict(
    tasks=_tasks, sac_vs_ddpg=_sac_vs_ddpg, seeds=_seeds, hard=_hard,
    grad_steps=_grad_steps, components=_components, mixture_gradients=_mixture_gradients,
    overlap=_overlap, parity=_parity, settings=_settings)


def analyze(claim: str, arms: Sequence[C.Arm], data: dict[str, tuple], budget: str) -> dict:
  """The verdict dict of a claim from {arm key: (steps, {seed: curve})}.

  `arms` summarizes every arm at its own horizon (its last evaluation). Each part compares
  its arms at equal env steps: their curves cut at the shortest one's horizon, which the
  part records as `env_steps` (with each arm's mean of the tested statistic there, `means`).
  So on HalfCheetah SAC meets DDPG G = 1 at 300k and DDPG G = 4 (a 100k run at the cpu
  budget) at 100k; one short arm never cuts the others' comparison. `tasks` judges each arm
  alone against an absolute bar, at its own horizon.
  """
  if claim not in RULES:
    raise ValueError(f"claim={claim!r}: must be one of {tuple(RULES)}")
  a = Arms(arms, data)
  out: dict = dict(claim=claim, budget=budget, arms=a.stats, parts=[])
  out.update(RULES[claim](a))
  # Side by side (descriptive, no verdict): each panel's arms at the shortest one's horizon,
  # where their horizons differ (the arms table gives each its own; tasks: always, the
  # modern line's 100k beside the paper configuration).
  out["side_by_side"] = [
      c for t in a.panels
      if len(ks := a.in_panel(t)) > 1
      and (claim == "tasks" or len({a.stats[k]["env_steps"] for k in ks}) > 1)
      for c in a.common(*ks)]
  if not out["parts"]:
    out["verdict"] = V.INCONCLUSIVE
    out["note"] = "no part of this claim can be tested with the arms given"
  if "verdict" not in out:
    out["verdict"] = V.combine([p["verdict"] for p in out["parts"]])
  if budget == "smoke":
    out["note"] = "smoke budget: checks the plumbing only; the verdict means nothing"
  return out


def mark_cut_and_interim(result: dict, up_to: int | None, interim: Sequence[dict],
                         ends: dict[str, int] | None = None) -> dict:
  """Says in the result (verdict.json, the table's notes, the figure's title) that the
  curves were cut at --up_to (and which runs end before it: `ends`, {run: its last
  evaluated env step}), and which runs were still under way."""
  notes = []
  if up_to is not None:
    result["up_to"] = up_to
    notes.append(f"Every curve cut at {up_to:,} env steps (--up_to).")
    short = sorted((r, t) for r, t in (ends or {}).items() if t < up_to)
    if short:
      notes.append("Ending before it: " + "; ".join(f"{r} at {t:,}" for r, t in short) + ".")
  if interim:
    result["interim"] = list(interim)
    notes.append("Interim: " + "; ".join(
        f"run {i['run']} is under way, at {i['reached']:,} of {i['target']:,} env steps"
        for i in interim) + ": this analysis reads its evaluations so far, not the finished "
        "run.")
  if notes:
    result["note"] = " ".join([result.get("note", "")] + notes).strip()
  return result
