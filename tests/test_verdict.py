"""The reproduction's statistics on synthetic numbers whose answer is known, and against
independent references (scipy's permutation test and exact enumeration by hand)."""

import itertools

import numpy as np
import pytest
from scipy import stats

from experiments import verdict


def test_summarize_curve():
  s = verdict.summarize_curve([0.0, 1.0, 5.0, 3.0, 4.0], last=3)
  assert s == dict(final=4.0, auc=13.0 / 5, max=5.0)
  with pytest.raises(ValueError, match="one or more"):
    verdict.summarize_curve([])


def test_permutation_p_value_matches_exhaustive_enumeration_and_scipy():
  a = np.array([3.1, 4.0, 5.2, 4.4, 3.9])
  b = np.array([2.0, 3.5, 2.8, 3.0, 4.1])
  c = verdict.compare(a, b)
  pooled = np.concatenate([a, b])
  obs = a.mean() - b.mean()
  diffs = [pooled[list(i)].mean() - np.delete(pooled, list(i)).mean()
           for i in itertools.combinations(range(10), 5)]
  expected = np.mean(np.array(diffs) >= obs - 1e-12)
  assert c["p_greater"] == pytest.approx(expected, abs=1e-12)
  ref = stats.permutation_test((a, b), lambda x, y: x.mean() - y.mean(),
                               permutation_type="independent", alternative="greater",
                               n_resamples=np.inf)
  assert c["p_greater"] == pytest.approx(ref.pvalue, abs=1e-12)
  assert c["effect"] == pytest.approx(obs)
  # Hedges' g against its formula.
  sp = np.sqrt((4 * a.var(ddof=1) + 4 * b.var(ddof=1)) / 8)
  assert c["hedges_g"] == pytest.approx(obs / sp * (1 - 3 / (4 * 10 - 9)))


def test_directional_holds_on_a_clear_effect_and_never_forces_a_verdict():
  rng = np.random.default_rng(0)
  b = rng.normal(1000, 100, 5)
  clear = verdict.directional(b + 2000, b[::-1] + rng.normal(0, 1, 5))
  assert clear["verdict"] == verdict.HOLDS and clear["p_greater"] == pytest.approx(1 / 252)
  assert clear["ci95"][0] > 0
  # Reversed: significantly lower -> does not hold.
  assert verdict.directional(b, b + 2000)["verdict"] == verdict.FAILS
  # Pure noise, same distribution, wide spread: inconclusive.
  noise = verdict.directional(rng.normal(0, 1000, 5), rng.normal(0, 1000, 5), margin=10)
  assert noise["verdict"] == verdict.INCONCLUSIVE
  # Confidently tiny effect (interval below the margin): does not hold.
  tiny = verdict.directional(b + 1.0, b, margin=500)
  assert tiny["verdict"] == verdict.FAILS


def test_directional_power_and_false_positive_rate_on_synthetic_arms():
  """5 vs 5 seeds: a 2-sd effect is found most of the time; no effect rarely 'holds'."""
  rng = np.random.default_rng(1)
  found = sum(verdict.directional(rng.normal(2, 1, 5), rng.normal(0, 1, 5))["verdict"]
              == verdict.HOLDS for _ in range(200))
  false = sum(verdict.directional(rng.normal(0, 1, 5), rng.normal(0, 1, 5))["verdict"]
              == verdict.HOLDS for _ in range(400))
  assert found / 200 > 0.7, found
  assert false / 400 < 0.09, false  # nominal 5%; binomial 4 sd margin at n = 400


def test_bootstrap_interval_covers_the_true_difference_at_about_95_percent():
  rng = np.random.default_rng(2)
  cover = 0
  for _ in range(200):
    c = verdict.compare(rng.normal(3, 1, 8), rng.normal(1, 1, 8), seed=int(rng.integers(1e6)))
    cover += c["ci95"][0] <= 2.0 <= c["ci95"][1]
  assert 0.85 <= cover / 200 <= 0.99, cover  # percentile bootstrap undercovers a little


def test_within_and_spread_and_combine():
  best = np.array([3000.0, 3100, 2900, 3050, 2950])
  assert verdict.within(best, best - 20, margin=300)["verdict"] == verdict.HOLDS
  assert verdict.within(best, best - 1000, margin=300)["verdict"] == verdict.FAILS
  with pytest.raises(ValueError, match="margin"):
    verdict.within(best, best, margin=0)
  rng = np.random.default_rng(3)
  tight, wide = rng.normal(3000, 50, 8), rng.normal(3000, 1500, 8)
  assert verdict.spread_smaller(tight, wide)["verdict"] == verdict.HOLDS
  assert verdict.spread_smaller(wide, tight)["verdict"] == verdict.FAILS
  assert verdict.combine([verdict.HOLDS, verdict.HOLDS]) == verdict.HOLDS
  assert verdict.combine([verdict.HOLDS, verdict.INCONCLUSIVE]) == verdict.INCONCLUSIVE
  assert verdict.combine([verdict.HOLDS, verdict.FAILS]) == verdict.FAILS


def test_equivalent_is_two_sided_and_never_forced():
  a = np.array([3000.0, 3100, 2900, 3050, 2950])
  # Agreement: the interval of the difference lies inside (-300, 300), either sign.
  assert verdict.equivalent(a, a - 20, margin=300)["verdict"] == verdict.HOLDS
  assert verdict.equivalent(a, a + 20, margin=300)["verdict"] == verdict.HOLDS
  # Clearly apart, above or below: does not hold (a one-sided check would pass one).
  assert verdict.equivalent(a, a - 1000, margin=300)["verdict"] == verdict.FAILS
  assert verdict.equivalent(a, a + 1000, margin=300)["verdict"] == verdict.FAILS
  # Noisy seeds whose means agree cannot show agreement: inconclusive, not forced.
  noisy = np.array([-20.0, 3000, 500, 4500, 1200])
  r = verdict.equivalent(noisy, noisy[::-1] + 10, margin=300)
  assert r["verdict"] == verdict.INCONCLUSIVE and r["ci95"][0] < -300 < 300 < r["ci95"][1]
  with pytest.raises(ValueError, match="margin=-1"):
    verdict.equivalent(a, a, margin=-1)


def test_bad_inputs_are_refused():
  with pytest.raises(ValueError, match="2 or more seeds"):
    verdict.compare([1.0], [1.0, 2.0])
  with pytest.raises(ValueError, match="non-finite"):
    verdict.compare([1.0, np.nan], [1.0, 2.0])
