"""Statistics for the reproduction's verdicts: few seeds per arm, no normality assumed.

Everything is numpy only and deterministic (fixed PRNG seeds), so a verdict recomputed
from the same numbers is the same verdict.

- `summarize_curve`: one member's learning curve -> final return (the mean of the last
  `last` evaluations), area under the curve (the mean over all evaluations, i.e. the area
  normalized by the horizon) and the maximum over evaluations (the statistic of the TD3
  paper's Table 1).
- `mean_ci95(x)`: the bootstrap 95% interval of one arm's mean (the `tasks` bar's, and
  experiments.run_stats' last-3 interval).
- `compare(a, b)`: the effect mean(a) - mean(b) with a bootstrap 95% interval
  (percentile, resampling within each arm), Hedges' g, and the one-sided permutation
  p-values of "a > b" and "b > a" (exact over all splits when there are at most
  `EXACT_LIMIT` of them; 5 vs 5 seeds have 252).
- `directional(a, b, margin)`: the verdict on a claim "a is higher than b":
    holds                           p(a > b) < ALPHA
    does not hold                   p(b > a) < ALPHA, or the whole interval lies below
                                    `margin` (the effect is confidently too small to matter)
    inconclusive at this budget     otherwise.
- `within(best, other, margin)`: the verdict on "other is within `margin` of best":
    holds if the interval's upper end is below `margin`, does not hold if its lower end
    is above it, else inconclusive.
- `equivalent(a, b, margin)`: the verdict on "a and b agree within `margin`" (two
    one-sided bounds on the interval): holds if the whole interval of mean(a) - mean(b)
    lies inside (-margin, margin), does not hold if it lies wholly outside (above margin or
    below -margin), else inconclusive (few noisy seeds cannot show agreement).
- `spread_smaller(a, b)`: "the spread across seeds is smaller in a than in b", a
  Brown-Forsythe permutation test (absolute deviations from each arm's median).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np

ALPHA = 0.05
EXACT_LIMIT = 20_000
RESAMPLES = 10_000
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive at this budget"


def summarize_curve(returns: Sequence[float], last: int = 3) -> dict:
  """final (mean of the last `last` evaluations), auc (mean of all), max (best)."""
  r = np.asarray(returns, np.float64)
  if r.ndim != 1 or r.size == 0:
    raise ValueError(f"a curve needs one or more evaluations, got shape {r.shape}")
  if last < 1:
    raise ValueError(f"last={last}: must be >= 1")
  return dict(final=float(r[-last:].mean()), auc=float(r.mean()), max=float(r.max()))


def _arrays(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  for name, x in (("a", a), ("b", b)):
    if x.ndim != 1 or x.size < 2:
      raise ValueError(f"arm {name} needs 2 or more seeds, got {x.size}")
    if not np.all(np.isfinite(x)):
      raise ValueError(f"arm {name} has non-finite values: {x.tolist()}")
  return a, b


def _permutation_diffs(pooled: np.ndarray, n_a: int, seed: int) -> np.ndarray:
  """mean(first n_a) - mean(rest) over all splits (exact) or RESAMPLES random ones."""
  n = pooled.size
  if math.comb(n, n_a) <= EXACT_LIMIT:
    idx = np.array(list(itertools.combinations(range(n), n_a)))
  else:
    rng = np.random.default_rng(seed)
    idx = np.array([rng.permutation(n)[:n_a] for _ in range(RESAMPLES)])
  mask = np.zeros((len(idx), n), bool)
  np.put_along_axis(mask, idx, True, axis=1)
  total = pooled.sum()
  sum_a = (mask * pooled).sum(axis=1)
  return sum_a / n_a - (total - sum_a) / (n - n_a)


def mean_ci95(values: Sequence[float], seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap 95% interval of the mean of `values` (RESAMPLES resamples)."""
  x = np.asarray(values, np.float64)
  boot = np.random.default_rng(seed).choice(x, (RESAMPLES, x.size)).mean(axis=1)
  lo, hi = np.percentile(boot, [2.5, 97.5])
  return float(lo), float(hi)


def compare(a: Sequence[float], b: Sequence[float], seed: int = 0) -> dict:
  """Effect mean(a) - mean(b), its bootstrap 95% interval, Hedges' g, one-sided
  permutation p-values for a > b and b > a."""
  a, b = _arrays(a, b)
  diff = a.mean() - b.mean()
  perm = _permutation_diffs(np.concatenate([a, b]), a.size, seed)
  tol = 1e-12 * max(1.0, abs(diff))
  p_greater = float(np.mean(perm >= diff - tol))
  p_less = float(np.mean(perm <= diff + tol))
  rng = np.random.default_rng(seed + 1)
  boot = (rng.choice(a, (RESAMPLES, a.size)).mean(axis=1) -
          rng.choice(b, (RESAMPLES, b.size)).mean(axis=1))
  lo, hi = np.percentile(boot, [2.5, 97.5])
  pooled_sd = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) /
                        (a.size + b.size - 2))
  correction = 1.0 - 3.0 / (4.0 * (a.size + b.size) - 9.0)
  g = diff / pooled_sd * correction if pooled_sd > 0 else math.copysign(math.inf, diff)
  return dict(effect=float(diff), ci95=[float(lo), float(hi)], hedges_g=float(g),
              p_greater=p_greater, p_less=p_less, n=[int(a.size), int(b.size)],
              mean=[float(a.mean()), float(b.mean())],
              std=[float(a.std(ddof=1)), float(b.std(ddof=1))])


def directional(a: Sequence[float], b: Sequence[float], margin: float = 0.0,
                seed: int = 0) -> dict:
  """Verdict on "a is higher than b" (see the module docstring)."""
  c = compare(a, b, seed)
  if c["effect"] > 0 and c["p_greater"] < ALPHA:
    verdict = HOLDS
  elif c["p_less"] < ALPHA or c["ci95"][1] < margin:
    verdict = FAILS
  else:
    verdict = INCONCLUSIVE
  return dict(c, verdict=verdict, margin=float(margin), test="one-sided exact permutation "
              f"test of the mean difference, alpha {ALPHA}; bootstrap 95% interval")


def within(best: Sequence[float], other: Sequence[float], margin: float,
           seed: int = 0) -> dict:
  """Verdict on "other is within `margin` of best" (effect = mean(best) - mean(other))."""
  if not margin > 0:
    raise ValueError(f"margin={margin}: must be > 0")
  c = compare(best, other, seed)
  lo, hi = c["ci95"]
  verdict = HOLDS if hi < margin else FAILS if lo > margin else INCONCLUSIVE
  return dict(c, verdict=verdict, margin=float(margin),
              test="bootstrap 95% interval of the gap to the best arm against the margin")


def equivalent(a: Sequence[float], b: Sequence[float], margin: float,
               seed: int = 0) -> dict:
  """Verdict on "a and b agree within `margin`" (effect = mean(a) - mean(b))."""
  if not margin > 0:
    raise ValueError(f"margin={margin}: must be > 0")
  c = compare(a, b, seed)
  lo, hi = c["ci95"]
  verdict = (HOLDS if -margin < lo and hi < margin else
             FAILS if lo > margin or hi < -margin else INCONCLUSIVE)
  return dict(c, verdict=verdict, margin=float(margin),
              test="bootstrap 95% interval of the difference inside (-margin, margin)")


def spread_smaller(a: Sequence[float], b: Sequence[float], seed: int = 0) -> dict:
  """Verdict on "the spread across seeds is smaller in a than in b": a one-sided
  Brown-Forsythe permutation test on absolute deviations from each arm's median."""
  a, b = _arrays(a, b)
  dev_a, dev_b = np.abs(a - np.median(a)), np.abs(b - np.median(b))
  c = compare(dev_b, dev_a, seed)  # "b's deviations are larger"
  verdict = (HOLDS if c["effect"] > 0 and c["p_greater"] < ALPHA else
             FAILS if c["p_less"] < ALPHA else INCONCLUSIVE)
  return dict(verdict=verdict, std=[float(a.std(ddof=1)), float(b.std(ddof=1))],
              mean_abs_dev=[float(dev_a.mean()), float(dev_b.mean())],
              effect=c["effect"], ci95=c["ci95"], p=c["p_greater"],
              test="one-sided Brown-Forsythe permutation test (absolute deviations from "
                   f"the median), alpha {ALPHA}")


def combine(verdicts: Sequence[str]) -> str:
  """All parts must hold; any part that does not hold fails the claim."""
  if any(v == FAILS for v in verdicts):
    return FAILS
  if verdicts and all(v == HOLDS for v in verdicts):
    return HOLDS
  return INCONCLUSIVE
