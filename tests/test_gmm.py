"""Tests of sac_jax.gmm against independent float64 numpy/scipy references.

Tolerances (float32 code vs float64 reference), unless a test says otherwise:
  log-probs: atol=1e-5, rtol=1e-5. Observed float32 errors are a few ulps: <= 1e-4 on values
  of magnitude ~500 (d = 17), i.e. < 0.05 of this tolerance; rtol governs the large values.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from sac_jax import gmm
from sac_jax import networks

LOGP_TOL = dict(atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# float64 references (numpy/scipy only; never the code under test)


def ref_log_prob(logits, means, log_stds, u):
  """log p(u) of a diagonal Gaussian mixture in float64, numpy broadcasting."""
  logits, means, log_stds, u = (np.asarray(x, np.float64) for x in (logits, means, log_stds, u))
  log_w = logits - logsumexp(logits, axis=-1, keepdims=True)
  log_n = stats.norm.logpdf(u[..., None, :], loc=means, scale=np.exp(log_stds)).sum(-1)
  return logsumexp(log_w + log_n, axis=-1)


def ref_log1m_tanh2(u):
  """log(1 - tanh(u)^2) in float64 by the stable form 2 (log 2 - |u| - log1p(exp(-2|u|)))."""
  u = np.abs(np.asarray(u, np.float64))
  return 2.0 * (np.log(2.0) - u - np.log1p(np.exp(-2.0 * u)))


def ref_squashed_log_prob(logits, means, log_stds, u):
  return ref_log_prob(logits, means, log_stds, u) - ref_log1m_tanh2(u).sum(-1)


def ref_grads(logits, means, log_stds, u):
  """Analytic float64 gradients of sum log p(u) w.r.t. (logits, means, log_stds); same shapes.

  With responsibilities r_k = p(k|u), weights w = softmax(logits), z = (u - mu) / sigma:
    d/dlogit_k = r_k - w_k,  d/dmu_kj = r_k z_kj / sigma_kj,  d/dlog_std_kj = r_k (z_kj^2 - 1).
  Inputs share one batch shape here (no broadcasting to sum over).
  """
  logits, means, log_stds, u = (np.asarray(x, np.float64) for x in (logits, means, log_stds, u))
  log_w = logits - logsumexp(logits, axis=-1, keepdims=True)
  sigma = np.exp(log_stds)
  z = (u[..., None, :] - means) / sigma
  comp = log_w + stats.norm.logpdf(u[..., None, :], loc=means, scale=sigma).sum(-1)
  r = np.exp(comp - logsumexp(comp, axis=-1, keepdims=True))
  return (r - np.exp(log_w), r[..., None] * z / sigma, r[..., None] * (z**2 - 1.0))


def random_params(rng, batch, k, d):
  """float32 mixture parameters and u with moderate values."""
  logits = rng.normal(0.0, 1.5, batch + (k,)).astype(np.float32)
  means = rng.normal(0.0, 1.0, batch + (k, d)).astype(np.float32)
  log_stds = rng.uniform(-2.0, 1.0, batch + (k, d)).astype(np.float32)
  u = rng.normal(0.0, 1.5, batch + (d,)).astype(np.float32)
  return logits, means, log_stds, u


def maybe_jit(fn, jit):
  return jax.jit(fn) if jit else fn


# ----------------------------------------------------------------------------------------------
# log_prob and squashed_log_prob


def test_reference_log1m_tanh2_is_right():
  """The float64 reference matches log(1 - tanh^2) = -2 log cosh(u) where both are exact."""
  u = np.linspace(-20.0, 20.0, 4001)
  np.testing.assert_allclose(ref_log1m_tanh2(u), -2.0 * np.log(np.cosh(u)), rtol=1e-13,
                             atol=1e-13)
  small = u[np.abs(u) < 5.0]
  np.testing.assert_allclose(ref_log1m_tanh2(small), np.log1p(-np.tanh(small) ** 2),
                             rtol=1e-10, atol=1e-12)


def both_log_probs(logits, means, log_stds, u):
  return (gmm.log_prob(logits, means, log_stds, u),
          gmm.squashed_log_prob(logits, means, log_stds, u))


def check_both(out, logits, means, log_stds, u, shape):
  """Both outputs have `shape`, are float32 and match the float64 references."""
  for o, ref in zip(out, (ref_log_prob, ref_squashed_log_prob)):
    chex.assert_shape(o, shape)
    chex.assert_type(o, jnp.float32)
    chex.assert_trees_all_close(np.asarray(o, np.float64), ref(logits, means, log_stds, u),
                                **LOGP_TOL)


# Every (K, d, batch) jitted; unjitted (op-by-op, slow to dispatch) with the full batch shape.
GRID = [(k, d, batch, jit)
        for k in (1, 2, 4) for d in (1, 6, 17) for batch in ((), (3,), (2, 5))
        for jit in (True, False) if jit or batch == (2, 5)]


@pytest.mark.parametrize("k, d, batch, jit", GRID)
def test_log_prob_matches_scipy(k, d, batch, jit):
  """log_prob and squashed_log_prob equal the float64 scipy mixture density, float32 out."""
  rng = np.random.default_rng(1000 * k + 10 * d + len(batch))
  logits, means, log_stds, u = random_params(rng, batch, k, d)
  out = maybe_jit(both_log_probs, jit)(logits, means, log_stds, u)
  check_both(out, logits, means, log_stds, u, batch)


BROADCAST_CASES = [
    # (logits batch, means batch, log_stds batch, u batch)
    ((5,), (5,), (5,), (2, 5)),      # several u per state
    ((5,), (5,), (5,), (2, 1)),      # u broadcast against the state axis
    ((), (), (), (4, 3)),            # one distribution, a grid of u
    ((2, 5), (5,), (5,), (5,)),      # logits with more batch dims than means
    ((1, 5), (3, 1), (3, 1), ()),    # outer-product broadcast, a single u
    ((), (3,), (3,), (3,)),          # shared logits
]


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("shapes", BROADCAST_CASES, ids=str)
def test_log_prob_broadcasting(shapes, jit):
  """Batch dimensions of logits, means/log_stds and u broadcast numpy-style; result [...]."""
  lb, mb, sb, ub = shapes
  k, d = 3, 4
  rng = np.random.default_rng(7)
  logits = rng.normal(0.0, 1.5, lb + (k,)).astype(np.float32)
  means = rng.normal(0.0, 1.0, mb + (k, d)).astype(np.float32)
  log_stds = rng.uniform(-2.0, 1.0, sb + (k, d)).astype(np.float32)
  u = rng.normal(0.0, 1.5, ub + (d,)).astype(np.float32)
  out = maybe_jit(both_log_probs, jit)(logits, means, log_stds, u)
  check_both(out, logits, means, log_stds, u, np.broadcast_shapes(lb, mb, sb, ub))


def test_log_stds_of_lower_rank_broadcast():
  """log_prob, squashed_log_prob and sample accept a state-independent log_std [K, d] with
  means [B, K, d]: batch dimensions broadcast (DESIGN section 3)."""
  k, d, b = 2, 3, 5
  rng = np.random.default_rng(8)
  logits = rng.normal(size=(b, k)).astype(np.float32)
  means = rng.normal(size=(b, k, d)).astype(np.float32)
  log_stds = rng.uniform(-1.0, 0.5, (k, d)).astype(np.float32)
  u = rng.normal(size=(b, d)).astype(np.float32)
  out = jax.jit(both_log_probs)(logits, means, log_stds, u)
  check_both(out, logits, means, log_stds, u, (b,))
  u_sampled = jax.jit(gmm.sample)(jax.random.PRNGKey(0), logits, means, log_stds)
  chex.assert_shape(u_sampled, (b, d))


@pytest.mark.parametrize("d", [1, 6, 17])
def test_single_component_is_diagonal_gaussian(d):
  """K = 1 equals scipy's multivariate normal with a diagonal covariance, whatever the logit."""
  rng = np.random.default_rng(d)
  _, means, log_stds, u = random_params(rng, (4,), 1, d)
  logits = rng.normal(0.0, 5.0, (4, 1)).astype(np.float32)
  out = jax.jit(gmm.log_prob)(logits, means, log_stds, u)
  expected = [
      stats.multivariate_normal(means[i, 0].astype(np.float64),
                                np.diag(np.exp(2.0 * log_stds[i, 0].astype(np.float64)))
                                ).logpdf(u[i].astype(np.float64))
      for i in range(4)]
  chex.assert_trees_all_close(np.asarray(out, np.float64), np.array(expected), **LOGP_TOL)


@pytest.mark.parametrize("k", [2, 4])
def test_identical_components_equal_one_component(k):
  """K identical components give the density of one, whatever the logits."""
  rng = np.random.default_rng(k)
  d = 6
  _, means1, log_stds1, u = random_params(rng, (5,), 1, d)
  logits = rng.normal(0.0, 4.0, (5, k)).astype(np.float32)
  means = np.repeat(means1, k, axis=-2)
  log_stds = np.repeat(log_stds1, k, axis=-2)
  out = jax.jit(gmm.log_prob)(logits, means, log_stds, u)
  expected = stats.norm.logpdf(u.astype(np.float64), means1[:, 0].astype(np.float64),
                               np.exp(log_stds1[:, 0].astype(np.float64))).sum(-1)
  chex.assert_trees_all_close(np.asarray(out, np.float64), expected, **LOGP_TOL)


def test_log_prob_gradients_match_analytic():
  """jax.grad of sum log_prob equals the analytic float64 gradient (responsibilities)."""
  rng = np.random.default_rng(11)
  logits, means, log_stds, u = random_params(rng, (6,), 3, 4)
  grads = jax.jit(jax.grad(lambda *p: jnp.sum(gmm.log_prob(*p, u)), argnums=(0, 1, 2)))(
      logits, means, log_stds)
  # float32 gradients of O(1-10) magnitude: atol=1e-4, rtol=1e-4.
  chex.assert_trees_all_close(jax.tree.map(lambda g: np.asarray(g, np.float64), grads),
                              ref_grads(logits, means, log_stds, u), atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# numerical extremes


@pytest.mark.parametrize("jit", [True, False])
def test_tanh_log_det_jacobian_is_accurate_up_to_20(jit):
  """sum_j log(1 - tanh(u_j)^2) matches the stable float64 form for |u| <= 20, incl. tiny u."""
  u = np.concatenate([np.linspace(-20.0, 20.0, 801), [-1e-4, 1e-4, 0.0, -19.99, 19.99]])
  u = u.astype(np.float32)
  out = maybe_jit(gmm.tanh_log_det_jacobian, jit)(u[:, None])
  chex.assert_shape(out, u.shape)
  chex.assert_tree_all_finite(out)
  # Values up to ~39 in magnitude: atol=1e-5, rtol=1e-6 (float32 ulp at 39 is 4e-6).
  chex.assert_trees_all_close(np.asarray(out, np.float64), ref_log1m_tanh2(u), atol=1e-5,
                              rtol=1e-6)
  # d = 5 sums over the last axis.
  u5 = u[:800].reshape(160, 5)
  out5 = maybe_jit(gmm.tanh_log_det_jacobian, jit)(u5)
  chex.assert_trees_all_close(np.asarray(out5, np.float64), ref_log1m_tanh2(u5).sum(-1),
                              atol=5e-5, rtol=1e-6)


def _extreme_cases():
  """A batch of K = 2, d = 3 mixtures at the numerical edges, with u; all float32."""
  rng = np.random.default_rng(3)
  lo, hi = networks.LOG_STD_MIN, networks.LOG_STD_MAX
  cases = []
  # |u| up to 20, moderate mixture.
  for u0 in (-20.0, -15.0, -7.5, 7.5, 15.0, 20.0):
    cases.append(([0.2, -0.4], rng.normal(size=(2, 3)), rng.uniform(-1, 0.5, (2, 3)),
                  [u0, -u0, 0.5 * u0]))
  # log-stds at both clip bounds; u on the narrow component's scale around mean 0,
  # and u away from it.
  for z in (0.0, 1.5, -3.0):
    cases.append(([0.0, 0.0], [[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]],
                  [[lo, lo, lo], [hi, hi, hi]], np.exp(lo) * np.array([z, -z, 0.5 * z])))
  cases.append(([0.0, 0.0], [[0.3, 0.0, -0.2], [1.0, -1.0, 0.5]],
                [[lo, lo, lo], [hi, hi, hi]], [0.9, -0.5, 0.1]))
  cases.append(([1.0, -1.0], [[0.3, 0.0, -0.2], [1.0, -1.0, 0.5]],
                [[lo, hi, lo], [hi, lo, hi]], [20.0, -20.0, 0.5]))
  # logits differing by 100: u near the heavy component, and near the light one only.
  for logits in ([100.0, 0.0], [0.0, -100.0]):
    for u in ([2.0, 2.0, 2.0], [-2.0, -2.0, -2.0]):
      cases.append((logits, [[2.0, 2.0, 2.0], [-2.0, -2.0, -2.0]],
                    np.full((2, 3), -1.5), u))
  logits, means, log_stds, u = (np.array([c[i] for c in cases], np.float32) for i in range(4))
  return logits, means, log_stds, u


@pytest.mark.parametrize("jit", [True, False])
def test_squashed_log_prob_at_extremes(jit):
  """Finite and accurate for |u| up to 20, log-stds at the clip bounds, logits 100 apart."""
  logits, means, log_stds, u = _extreme_cases()
  out = maybe_jit(both_log_probs, jit)(logits, means, log_stds, u)
  chex.assert_tree_all_finite(out)
  for o, ref in zip(out, (ref_log_prob, ref_squashed_log_prob)):
    expected = ref(logits, means, log_stds, u)
    assert np.all(np.isfinite(expected))
    # Values range from ~60 (narrow component, 3 dims of -log(2e-9)) down to ~-1e20; the
    # relative tolerance governs the large ones.
    chex.assert_trees_all_close(np.asarray(o, np.float64), expected, **LOGP_TOL)


def test_gradients_finite_and_accurate_at_extremes():
  """jax.grad of sum squashed_log_prob w.r.t. logits/means/log_stds/u: finite and accurate."""
  logits, means, log_stds, u = _extreme_cases()
  grad_fn = jax.grad(lambda *p: jnp.sum(gmm.squashed_log_prob(*p)), argnums=(0, 1, 2, 3))
  grads = jax.jit(grad_fn)(logits, means, log_stds, u)
  chex.assert_tree_all_finite(grads)
  # The parameter gradients match the analytic float64 ones. Entries reach ~1e19 (z / sigma
  # with sigma = 2e-9), so the comparison is relative: rtol=1e-5, atol=1e-6.
  expected = ref_grads(logits, means, log_stds, u)
  chex.assert_trees_all_close(jax.tree.map(lambda g: np.asarray(g, np.float64), grads[:3]),
                              expected, atol=1e-6, rtol=1e-5)
  # d/du_j = -sum_k r_k z_kj / sigma_kj - d/du_j log(1 - tanh(u_j)^2) = ... + 2 tanh(u_j).
  expected_u = -expected[1].sum(-2) + 2.0 * np.tanh(u.astype(np.float64))
  chex.assert_trees_all_close(np.asarray(grads[3], np.float64), expected_u, atol=1e-6,
                              rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# sample


def _mixture_moments(w, mu, s):
  """Analytic mean and covariance of a diagonal Gaussian mixture (float64)."""
  mean = w @ mu
  second = sum(w[k] * (np.diag(s[k] ** 2) + np.outer(mu[k], mu[k])) for k in range(len(w)))
  return mean, second - np.outer(mean, mean)


def test_sample_matches_mixture_distribution():
  """200k samples of a well-separated 2-D, K = 3 mixture: frequencies, per-component and
  overall moments match the analytic values within 5 standard errors."""
  n = 200_000
  w = np.array([0.2, 0.5, 0.3])
  mu = np.array([[-6.0, -1.0], [0.0, 4.0], [7.0, -3.0]])
  s = np.array([[0.5, 0.8], [0.7, 0.4], [0.6, 1.0]])
  logits = (np.log(w) + 0.7).astype(np.float32)  # a shift of all logits changes nothing
  logits_b = np.broadcast_to(logits, (n, 3))
  u = jax.jit(gmm.sample)(jax.random.PRNGKey(0), logits_b, mu.astype(np.float32),
                          np.log(s).astype(np.float32))
  chex.assert_shape(u, (n, 2))
  chex.assert_type(u, jnp.float32)
  u = np.asarray(u, np.float64)

  # Components are >= 7.8 apart with stds <= 1: nearest-mean assignment errs with p < 1e-6.
  comp = np.argmin(((u[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
  counts = np.bincount(comp, minlength=3)
  se_counts = np.sqrt(n * w * (1.0 - w))
  assert np.all(np.abs(counts - n * w) < 5.0 * se_counts), (counts, n * w)
  assert stats.chisquare(counts, n * w).pvalue > 1e-6

  for k in range(3):
    x = u[comp == k]
    nk = len(x)
    # u | k ~ N(mu_k, diag(s_k^2)): mean SE s/sqrt(n), std SE ~ s/sqrt(2n), corr SE 1/sqrt(n).
    assert np.all(np.abs(x.mean(0) - mu[k]) < 5.0 * s[k] / np.sqrt(nk)), (k, x.mean(0))
    assert np.all(np.abs(x.std(0, ddof=1) - s[k]) < 5.0 * s[k] / np.sqrt(2 * nk)), k
    assert abs(np.corrcoef(x.T)[0, 1]) < 5.0 / np.sqrt(nk), k

  mean, cov = _mixture_moments(w, mu, s)
  m_hat = u.mean(0)
  assert np.all(np.abs(m_hat - mean) < 5.0 * u.std(0, ddof=1) / np.sqrt(n)), (m_hat, mean)
  c = u - m_hat
  prods = c[:, :, None] * c[:, None, :]
  cov_hat = prods.mean(0) * n / (n - 1)
  se_cov = prods.std(0, ddof=1) / np.sqrt(n)
  assert np.all(np.abs(cov_hat - cov) < 5.0 * se_cov), (cov_hat, cov, se_cov)


@pytest.mark.parametrize("shapes", [
    ((), (), ()), ((2, 5), (2, 5), (2, 5)), ((5,), (), ()), ((), (4,), (4,)),
    ((2, 1), (1, 3), (2, 3))], ids=str)
def test_sample_shape_dtype_broadcasting(shapes):
  """sample returns float32 [broadcast batch..., d] for broadcastable parameter batches."""
  lb, mb, sb = shapes
  k, d = 3, 2
  rng = np.random.default_rng(0)
  logits = rng.normal(size=lb + (k,)).astype(np.float32)
  means = rng.normal(size=mb + (k, d)).astype(np.float32)
  log_stds = rng.uniform(-1, 0, sb + (k, d)).astype(np.float32)
  u = jax.jit(gmm.sample)(jax.random.PRNGKey(1), logits, means, log_stds)
  chex.assert_shape(u, np.broadcast_shapes(lb, mb, sb) + (d,))
  chex.assert_type(u, jnp.float32)
  chex.assert_tree_all_finite(u)


def test_sample_broadcast_rows_use_their_own_parameters():
  """With batched logits and shared means (or the reverse), row i follows row i's parameters."""
  n = 4000
  mu = np.array([[-2.0, 1.0], [0.5, 0.0], [3.0, -1.0]], np.float32)  # [K=3, d=2]
  sig = 0.05
  log_stds = np.full((3, 2), np.log(sig), np.float32)
  se = sig / np.sqrt(n)
  # Row i puts all its weight (up to e^-100) on component i; means and log_stds are shared.
  logits = np.broadcast_to(100.0 * np.eye(3, dtype=np.float32) - 50.0, (n, 3, 3))
  u = jax.jit(gmm.sample)(jax.random.PRNGKey(2), logits, mu, log_stds)
  chex.assert_shape(u, (n, 3, 2))
  u = np.asarray(u, np.float64)
  assert np.all(np.abs(u.mean(0) - mu) < 5.0 * se), u.mean(0)
  assert np.all(np.abs(u.std(0, ddof=1) - sig) < 5.0 * sig / np.sqrt(2 * n))
  # Shared logits (one-hot on component 1), per-row means: row i is centred on means[i, 1].
  means_rows = np.stack([mu, mu + 10.0, mu - 10.0])  # [3, K, d]
  logits_1 = np.array([-50.0, 50.0, -50.0], np.float32)
  u = jax.jit(gmm.sample)(jax.random.PRNGKey(3), logits_1,
                          np.broadcast_to(means_rows, (n, 3, 3, 2)),
                          np.broadcast_to(log_stds, (n, 3, 3, 2)))
  chex.assert_shape(u, (n, 3, 2))
  assert np.all(np.abs(np.asarray(u, np.float64).mean(0) - means_rows[:, 1]) < 5.0 * se)


def test_sample_keys():
  """Equal keys give equal samples; different keys give different samples."""
  rng = np.random.default_rng(0)
  logits, means, log_stds, _ = random_params(rng, (8,), 3, 4)
  f = jax.jit(gmm.sample)
  a = f(jax.random.PRNGKey(5), logits, means, log_stds)
  b = f(jax.random.PRNGKey(5), logits, means, log_stds)
  c = f(jax.random.PRNGKey(6), logits, means, log_stds)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert np.all(np.asarray(a) != np.asarray(c))
  # Unjitted agrees with jitted for the same key (float32 rounding only).
  chex.assert_trees_all_close(gmm.sample(jax.random.PRNGKey(5), logits, means, log_stds), a,
                              atol=1e-6, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# deterministic action


@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_component_modes_are_tanh_of_means(batch):
  """component_modes(means) = tanh(means), shape [..., K, d]."""
  means = np.random.default_rng(0).normal(0.0, 3.0, batch + (4, 3)).astype(np.float32)
  modes = gmm.component_modes(means)
  chex.assert_shape(modes, batch + (4, 3))
  chex.assert_trees_all_close(np.asarray(modes, np.float64), np.tanh(means.astype(np.float64)),
                              atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_select_component_picks_argmax(batch, jit):
  """select_component returns modes[..., argmax scores, :] (numpy fancy indexing)."""
  rng = np.random.default_rng(len(batch))
  k, d = 5, 3
  modes = rng.uniform(-1, 1, batch + (k, d)).astype(np.float32)
  scores = rng.permuted(np.broadcast_to(np.arange(k, dtype=np.float32), batch + (k,)).copy(),
                        axis=-1)
  out = maybe_jit(gmm.select_component, jit)(modes, scores)
  chex.assert_shape(out, batch + (d,))
  best = np.argmax(scores, axis=-1)
  expected = np.take_along_axis(modes, best[..., None, None], axis=-2)[..., 0, :]
  np.testing.assert_array_equal(np.asarray(out), expected)


def test_select_component_paper_evaluation_action():
  """With scores Q(tanh(mu_k)) the component whose squashed mean is nearest Q's peak wins."""
  means = np.array([[[-2.0, 0.1], [0.3, -0.2], [1.5, 1.0]],
                    [[0.3, -0.2], [2.0, 2.0], [-0.1, -3.0]]], np.float32)  # [2, K=3, d=2]
  peak = np.array([0.25, -0.2])
  modes = gmm.component_modes(means)
  scores = -jnp.sum((modes - peak) ** 2, axis=-1)
  out = gmm.select_component(modes, scores)
  chex.assert_trees_all_close(np.asarray(out, np.float64),
                              np.tanh(np.array([[0.3, -0.2], [0.3, -0.2]])), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# the first release's capped squash term


def ref_capped_log1m_tanh2(u):
  """log(1 - tanh(u)^2 + 1e-6) in float64: 1 - tanh^2 = 4 e^{-2|u|} / (1 + e^{-2|u|})^2."""
  u = np.abs(np.asarray(u, np.float64))
  return np.log(4.0 * np.exp(-2.0 * u) / (1.0 + np.exp(-2.0 * u)) ** 2 + 1e-6)


@pytest.mark.parametrize("jit", [True, False])
def test_capped_squash_term_matches_float64_and_is_flat_in_the_tails(jit):
  """squash='capped': sum_j log(1 - tanh(u_j)^2 + 1e-6), value and d/du, to |u| = 1000;
  it equals the exact term near 0 and is log(1e-6) = -13.8 far out, where the exact one
  keeps falling as -2|u|."""
  u = np.concatenate([np.linspace(-30.0, 30.0, 601), [-1000.0, -80.0, 80.0, 1000.0]])
  u = u.astype(np.float32)
  fn = lambda x: gmm.tanh_log_det_jacobian(x, "capped")
  out = maybe_jit(fn, jit)(u[:, None])
  chex.assert_shape(out, u.shape)
  # float32 1 - tanh^2 near u = 0 loses ~1e-7 absolute: atol 1e-5.
  chex.assert_trees_all_close(np.asarray(out, np.float64), ref_capped_log1m_tanh2(u),
                              atol=1e-5, rtol=1e-5)
  far = np.abs(u) >= 16.0  # 1 - tanh^2 < 6e-14 there
  np.testing.assert_allclose(np.asarray(out)[far], np.log(1e-6), rtol=1e-5)
  exact = np.asarray(gmm.tanh_log_det_jacobian(u[:, None]))
  assert np.all(exact[np.abs(u) >= 20.0] < np.log(1e-6) - 20.0)
  near = np.abs(u) <= 0.5
  np.testing.assert_allclose(np.asarray(out)[near], exact[near], atol=1e-5)
  # d/du log(1 - t^2 + e) = -2 t (1 - t^2) / (1 - t^2 + e), t = tanh u.
  grad = maybe_jit(jax.vmap(jax.grad(lambda x: fn(x[None]))), jit)(u)
  t = np.tanh(u.astype(np.float64))
  ref_grad = -2.0 * t * (1.0 - t ** 2) / (1.0 - t ** 2 + 1e-6)
  chex.assert_trees_all_close(np.asarray(grad, np.float64), ref_grad, atol=1e-5, rtol=1e-4)
  # squashed_log_prob takes the same switch: log p(u) minus the capped term.
  logits, means, log_stds, u3 = _extreme_cases()
  got = maybe_jit(lambda *a: gmm.squashed_log_prob(*a, squash="capped"), jit)(
      logits, means, log_stds, u3)
  expected = (ref_log_prob(logits, means, log_stds, u3)
              - ref_capped_log1m_tanh2(u3).sum(-1))
  chex.assert_trees_all_close(np.asarray(got, np.float64), expected, **LOGP_TOL)


def test_unknown_squash_correction_is_refused_by_name():
  with pytest.raises(ValueError, match=r"squash='tight': must be one of \['exact', 'capped'\]"):
    gmm.tanh_log_det_jacobian(jnp.zeros((2, 3)), "tight")


def test_squash_choices_are_the_settings():
  from sac_jax import settings
  assert settings.BY_NAME["squash_correction"].choices == gmm.SQUASH_CORRECTIONS
