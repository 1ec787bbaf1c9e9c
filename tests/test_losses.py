"""Tests of sac_jax.losses against independent float64 numpy/scipy references.

Tolerances (float32 code vs float64 reference), unless a test says otherwise: loss values and
gradients of O(1-10) magnitude, atol=1e-5, rtol=1e-5. Monte-Carlo comparisons use 5 standard
errors computed from the samples themselves; every such test also checks that the standard
error is small next to the quantity tested, so it could fail.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats
from scipy.special import logsumexp

from sac_jax import gmm
from sac_jax import losses
from sac_jax import networks

TOL = dict(atol=1e-5, rtol=1e-5)


def maybe_jit(fn, jit, **kwargs):
  return jax.jit(fn, **kwargs) if jit else fn


def f64(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


# ----------------------------------------------------------------------------------------------
# float64 references


def ref_log1m_tanh2(u):
  u = np.abs(np.asarray(u, np.float64))
  return 2.0 * (np.log(2.0) - u - np.log1p(np.exp(-2.0 * u)))


def ref_mixture(logits, means, log_stds, u):
  """float64 log p(u), log pi(tanh u) and the score d log p / d(logits, means, log_stds).

  Shapes: logits [..., K], means/log_stds [..., K, d], u [..., d] (same batch shape).
  Score: r = p(k|u), w = softmax(logits), z = (u - mu) / sigma:
    d/dlogit_k = r_k - w_k,  d/dmu_kj = r_k z_kj / sigma_kj,  d/dlog_std_kj = r_k (z_kj^2 - 1).
  """
  logits, means, log_stds, u = (np.asarray(x, np.float64) for x in (logits, means, log_stds, u))
  log_w = logits - logsumexp(logits, axis=-1, keepdims=True)
  sigma = np.exp(log_stds)
  comp = log_w + stats.norm.logpdf(u[..., None, :], means, sigma).sum(-1)
  log_p = logsumexp(comp, axis=-1)
  r = np.exp(comp - log_p[..., None])
  z = (u[..., None, :] - means) / sigma
  score = (r - np.exp(log_w), r[..., None] * z / sigma, r[..., None] * (z**2 - 1.0))
  return log_p, log_p - ref_log1m_tanh2(u).sum(-1), score


# ----------------------------------------------------------------------------------------------
# plain linear critics: V(s) = s w + b, Q_h(s, a) = [s, a] w_h + b_h


def linear_v_apply(params, obs):
  return obs @ params["w"] + params["b"]


def linear_q_apply(params, obs, action):
  x = jnp.concatenate([obs, action], axis=-1)
  return jnp.einsum("bi,hi->hb", x, params["w"]) + params["b"][:, None]  # [num_q, B]


def _batch(rng, b=16, obs_dim=3, act_dim=2):
  f32 = lambda x: np.asarray(x, np.float32)
  return dict(
      obs=f32(rng.normal(size=(b, obs_dim))), action=f32(rng.uniform(-1, 1, (b, act_dim))),
      reward=f32(rng.normal(size=b)), terminated=f32(rng.uniform(size=b) < 0.3),
      v_next=f32(rng.normal(0, 5, b)), q_pi=f32(rng.normal(0, 3, b)),
      log_pi=f32(rng.normal(0, 2, b)))


# ----------------------------------------------------------------------------------------------
# targets


@pytest.mark.parametrize("jit", [True, False])
def test_soft_q_target_matches_numpy(jit):
  """soft_q_target = c r + gamma (1 - done) V_target(s')."""
  bt = _batch(np.random.default_rng(0))
  out = maybe_jit(losses.soft_q_target, jit)(bt["reward"], bt["terminated"], bt["v_next"],
                                             3.0, 0.99)
  r, d, v = f64((bt["reward"], bt["terminated"], bt["v_next"]))
  chex.assert_shape(out, (16,))
  chex.assert_trees_all_close(f64(out), 3.0 * r + 0.99 * (1.0 - d) * v, **TOL)


def test_termination_stops_bootstrap_truncation_does_not():
  """terminated = 1 gives c r exactly; a truncated step (terminated = 0) keeps gamma V(s')."""
  reward = np.array([1.0, -2.0, 0.5, 0.0], np.float32)
  v_next = np.array([1e6, -7.0, 3.0, 123.0], np.float32)
  terminated = np.array([1.0, 1.0, 0.0, 0.0], np.float32)  # the last two: truncated or running
  out = np.asarray(jax.jit(losses.soft_q_target)(reward, terminated, v_next, 2.0, 0.9))
  np.testing.assert_array_equal(out[:2], 2.0 * reward[:2])
  np.testing.assert_allclose(out[2:], 2.0 * reward[2:] + 0.9 * v_next[2:], rtol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.2, 1.0])
def test_soft_value_target_matches_numpy(alpha):
  """soft_value_target = Q(s, a_pi) - alpha log pi; with alpha = 0 it is exactly Q."""
  bt = _batch(np.random.default_rng(1))
  out = jax.jit(losses.soft_value_target)(bt["q_pi"], bt["log_pi"], alpha)
  chex.assert_trees_all_close(f64(out), f64(bt["q_pi"]) - alpha * f64(bt["log_pi"]), **TOL)
  if alpha == 0.0:
    np.testing.assert_array_equal(np.asarray(out), bt["q_pi"])


# ----------------------------------------------------------------------------------------------
# value and Q losses


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_value_loss_value_and_gradient_match_numpy(alpha, jit):
  """J_V = mean 1/2 (V - (Q - alpha log pi))^2 and its gradient, for a linear V."""
  rng = np.random.default_rng(2)
  bt = _batch(rng)
  params = {"w": rng.normal(size=3).astype(np.float32), "b": np.float32(0.3)}
  fn = lambda p, obs, q_pi, log_pi, alpha: losses.value_loss(p, linear_v_apply, obs, q_pi,
                                                              log_pi, alpha)
  (loss, metrics), grads = maybe_jit(jax.value_and_grad(fn, has_aux=True), jit)(
      params, bt["obs"], bt["q_pi"], bt["log_pi"], alpha)
  obs, w, b = f64((bt["obs"], params["w"], params["b"]))
  target = f64(bt["q_pi"]) - alpha * f64(bt["log_pi"])
  err = obs @ w + b - target
  chex.assert_trees_all_close(f64(loss), 0.5 * np.mean(err**2), **TOL)
  chex.assert_trees_all_close(f64(grads), {"w": np.mean(err[:, None] * obs, 0),
                                           "b": np.mean(err)}, **TOL)
  chex.assert_trees_all_close(f64(metrics["v_target"]), np.mean(target), **TOL)
  chex.assert_trees_all_close(f64(metrics["v"]), np.mean(obs @ w + b), **TOL)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("num_q", [1, 2])
def test_q_loss_value_and_gradient_match_numpy(num_q, jit):
  """J_Q = sum_h mean 1/2 (Q_h(s, a) - (c r + gamma (1 - done) V'))^2 and its gradient."""
  rng = np.random.default_rng(3)
  bt = _batch(rng)
  params = {"w": rng.normal(size=(num_q, 5)).astype(np.float32),
            "b": rng.normal(size=num_q).astype(np.float32)}

  def loss_fn(p, obs, action, reward, terminated, v_next):
    return losses.q_loss(p, linear_q_apply, obs, action, reward, terminated, v_next, 5.0, 0.99)

  (loss, metrics), grads = maybe_jit(jax.value_and_grad(loss_fn, has_aux=True), jit)(
      params, bt["obs"], bt["action"], bt["reward"], bt["terminated"], bt["v_next"])
  x = np.concatenate(f64((bt["obs"], bt["action"])), axis=-1)
  target = 5.0 * f64(bt["reward"]) + 0.99 * (1 - f64(bt["terminated"])) * f64(bt["v_next"])
  err = x @ f64(params["w"]).T + f64(params["b"]) - target[:, None]  # [B, num_q]
  chex.assert_trees_all_close(f64(loss), np.sum(0.5 * np.mean(err**2, 0)), **TOL)
  chex.assert_trees_all_close(f64(grads), {"w": np.mean(err.T[:, :, None] * x[None], 1),
                                           "b": np.mean(err, 0)}, **TOL)
  chex.assert_trees_all_close(f64(metrics["q_target"]), np.mean(target), **TOL)


@pytest.fixture(scope="module")
def nets():
  """Small flax networks (hidden 16, 16) with K = 2, d = 2, twin Q, and their params."""
  n = networks.make_networks(action_dim=2, num_components=2, hidden_sizes=(16, 16), num_q=2)
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  obs, act = jnp.zeros((1, 3)), jnp.zeros((1, 2))
  params = dict(policy=n.policy.init(keys[0], obs), q=n.q.init(keys[1], obs, act),
                v=n.v.init(keys[2], obs), v_target=n.v.init(keys[3], obs))
  return n, params


def _assert_all_zero(tree):
  for leaf in jax.tree.leaves(tree):
    np.testing.assert_array_equal(np.asarray(leaf), 0.0)


def _assert_some_nonzero(tree):
  assert any(np.any(np.asarray(leaf) != 0.0) for leaf in jax.tree.leaves(tree))


def test_no_gradient_reaches_the_target_value_network(nets):
  """grad of J_Q w.r.t. the target V params (through V_target(s')) is exactly zero."""
  n, params = nets
  bt = _batch(np.random.default_rng(4))

  def loss_of_v_target(v_target_params, q_params):
    v_next = n.v.apply(v_target_params, bt["obs"] + 1.0)
    return losses.q_loss(q_params, n.q.apply, bt["obs"], bt["action"], bt["reward"],
                         bt["terminated"], v_next, 1.0, 0.99)[0]

  g_target, g_q = jax.jit(jax.grad(loss_of_v_target, argnums=(0, 1)))(params["v_target"],
                                                                     params["q"])
  _assert_all_zero(g_target)
  _assert_some_nonzero(g_q)
  # The loss does depend on the target params, so a zero gradient is the stop_gradient.
  shifted = jax.tree.map(lambda x: x + 0.1, params["v_target"])
  assert loss_of_v_target(shifted, params["q"]) != loss_of_v_target(params["v_target"],
                                                                    params["q"])


def test_no_gradient_reaches_q_or_log_pi_through_the_value_target(nets):
  """grad of J_V w.r.t. the Q params behind q_pi and the policy params behind log_pi is zero."""
  n, params = nets
  bt = _batch(np.random.default_rng(5))
  u = bt["action"] * 2.0

  def value_loss_of(v_params, q_params, policy_params):
    q_pi = jnp.min(n.q.apply(q_params, bt["obs"], jnp.tanh(u)), axis=0)
    log_pi = gmm.squashed_log_prob(*n.policy.apply(policy_params, bt["obs"]), u)
    return losses.value_loss(v_params, n.v.apply, bt["obs"], q_pi, log_pi, 0.5)[0]

  g_v, g_q, g_pi = jax.jit(jax.grad(value_loss_of, argnums=(0, 1, 2)))(
      params["v"], params["q"], params["policy"])
  _assert_some_nonzero(g_v)
  _assert_all_zero(g_q)
  _assert_all_zero(g_pi)
  base = value_loss_of(params["v"], params["q"], params["policy"])
  shift = lambda t: jax.tree.map(lambda x: x + 0.1, t)
  assert value_loss_of(params["v"], shift(params["q"]), params["policy"]) != base
  assert value_loss_of(params["v"], params["q"], shift(params["policy"])) != base


def test_twin_q_loss_is_the_sum_of_single_head_losses(nets):
  """num_q = 2: J_Q is the sum of each head's single-Q loss; each head's gradient is its own."""
  n, params = nets
  bt = _batch(np.random.default_rng(6))
  single = networks.QNetwork(hidden_sizes=(16, 16), num_q=1)
  args = (bt["obs"], bt["action"], bt["reward"], bt["terminated"], bt["v_next"], 2.0, 0.99)
  twin_loss, twin_grad = jax.jit(jax.value_and_grad(
      lambda p: losses.q_loss(p, n.q.apply, *args)[0]))(params["q"])
  single_fn = jax.jit(jax.value_and_grad(lambda p: losses.q_loss(p, single.apply, *args)[0]))
  head_losses = []
  for h in range(2):
    head = jax.tree.map(lambda x: x[h:h + 1], params["q"])
    chex.assert_trees_all_close(single.apply(head, bt["obs"], bt["action"])[0],
                                n.q.apply(params["q"], bt["obs"], bt["action"])[h], **TOL)
    loss_h, grad_h = single_fn(head)
    head_losses.append(float(loss_h))
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[h:h + 1], twin_grad), grad_h,
                                atol=1e-6, rtol=1e-5)
  assert head_losses[0] != head_losses[1]
  chex.assert_trees_all_close(twin_loss, sum(head_losses), **TOL)


# ----------------------------------------------------------------------------------------------
# a state-free toy policy for the policy-gradient tests


def toy_apply(params, obs):
  """GMMOutput from a params dict, ignoring obs except for its batch shape."""
  batch = obs.shape[:-1]
  k, d = params["means"].shape
  return networks.GMMOutput(jnp.broadcast_to(params["logits"], batch + (k,)),
                            jnp.broadcast_to(params["means"], batch + (k, d)),
                            jnp.broadcast_to(params["log_stds"], batch + (k, d)))


def toy_params(logits, means, log_stds):
  return {"logits": np.asarray(logits, np.float32), "means": np.asarray(means, np.float32),
          "log_stds": np.asarray(log_stds, np.float32)}


def flat(p):
  return np.concatenate([np.ravel(p["logits"]), np.ravel(p["means"]), np.ravel(p["log_stds"])])


def unflat(theta, k, d):
  return {"logits": theta[:k], "means": theta[k:k + k * d].reshape(k, d),
          "log_stds": theta[k + k * d:].reshape(k, d)}


# 1-D mixture toy: K = 2, alpha = 1 (the paper), Q(a) = Q0 - 4 (a - 0.3)^2 on a = tanh(u).
# Q0 is the offset soft Q-values carry in practice (~ r / (1 - gamma)); it is what a baseline
# must cancel.
ALPHA = 1.0
Q0 = 10.0
THETA0 = np.array([0.3, -0.2, -0.6, 0.8, -0.7, -1.0])  # logits (2), means (2), log_stds (2)
U_GRID = np.linspace(-12.0, 12.0, 240_001)  # > 14 stds past every mean


def q_toy(a, peak=0.3):
  return Q0 - 4.0 * (a - peak) ** 2


def exact_objective(theta, peak=0.3, k=2):
  """F(theta) = int p(u) [alpha log pi(tanh u) - Q(tanh u)] du on a fine float64 grid (1-D)."""
  p = unflat(np.asarray(theta, np.float64), k, 1)
  log_w = p["logits"] - logsumexp(p["logits"])
  comp = log_w[:, None] + stats.norm.logpdf(U_GRID[None], p["means"], np.exp(p["log_stds"]))
  log_p = logsumexp(comp, axis=0)
  integrand = np.exp(log_p) * (ALPHA * (log_p - ref_log1m_tanh2(U_GRID)) - q_toy(np.tanh(U_GRID),
                                                                                 peak))
  return np.trapezoid(integrand, U_GRID)


def exact_gradient(theta, objective=exact_objective, h=1e-5):
  """Central float64 finite differences of the grid integral (error ~1e-9)."""
  eye = np.eye(len(theta))
  return np.array([(objective(theta + h * e) - objective(theta - h * e)) / (2 * h) for e in eye])


def test_exact_reference_is_consistent():
  """The grid integrates p to 1, and its FD gradient equals int p score (alpha log pi - Q)."""
  p = unflat(THETA0, 2, 1)
  log_p, log_pi, score = ref_mixture(p["logits"], p["means"][None], p["log_stds"][None],
                                     U_GRID[:, None])
  np.testing.assert_allclose(np.trapezoid(np.exp(log_p), U_GRID), 1.0, atol=1e-10)
  weight = np.exp(log_p) * (ALPHA * log_pi - q_toy(np.tanh(U_GRID)))
  analytic = np.concatenate([np.trapezoid(s.reshape(len(U_GRID), -1) * weight[:, None], U_GRID,
                                          axis=0) for s in score])
  np.testing.assert_allclose(exact_gradient(THETA0), analytic, atol=1e-7)


NUM_BATCHES, BATCH = 200, 1000


@pytest.fixture(scope="module")
def lr_gradients():
  """Per-batch gradients of the LR loss (reg = 0) with v = exact soft value and with v = 0."""
  params = toy_params(*unflat(THETA0, 2, 1).values())
  obs = jnp.zeros((BATCH, 1))

  @jax.jit
  @functools.partial(jax.vmap, in_axes=(0, None))
  def batch_grad(key, v):
    out = toy_apply(params, obs)
    u = gmm.sample(key, out.logits, out.means, out.log_stds)
    q_pi = q_toy(jnp.tanh(u[:, 0]))
    grad = jax.grad(lambda p: losses.likelihood_ratio_policy_loss(
        p, toy_apply, obs, u, q_pi, jnp.full((BATCH,), v), ALPHA, 0.0)[0])(params)
    return jnp.concatenate([grad["logits"], grad["means"][:, 0], grad["log_stds"][:, 0]])

  keys = jax.random.split(jax.random.PRNGKey(42), NUM_BATCHES)
  soft_value = -exact_objective(THETA0)  # V = E[Q - alpha log pi]
  return dict(baseline=np.asarray(batch_grad(keys, soft_value), np.float64),
              zero=np.asarray(batch_grad(keys, 0.0), np.float64),
              exact=exact_gradient(THETA0))


def test_likelihood_ratio_gradient_is_unbiased(lr_gradients):
  """MC mean of grad J_pi (V baseline) equals the exact grad of E[alpha log pi - Q] (5 SE)."""
  g, exact = lr_gradients["baseline"], lr_gradients["exact"]
  mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(len(g))
  assert np.all(np.abs(mean - exact) < 5.0 * se), (mean, exact, se)
  # Power: the tolerance is small next to the gradient, including the log-std entries.
  assert np.all(5.0 * se < 0.5 * np.abs(exact)), (se, exact)


def test_baseline_lowers_variance_and_both_are_unbiased(lr_gradients):
  """v = 0 is unbiased too, but the soft-value baseline cuts the gradient variance by > 4x."""
  g0, gb, exact = lr_gradients["zero"], lr_gradients["baseline"], lr_gradients["exact"]
  se0 = g0.std(0, ddof=1) / np.sqrt(len(g0))
  assert np.all(np.abs(g0.mean(0) - exact) < 5.0 * se0), (g0.mean(0), exact, se0)
  # Batches hold iid samples, so the ratio of per-batch variances is the per-sample ratio.
  ratio = g0.var(0, ddof=1).sum() / gb.var(0, ddof=1).sum()
  assert ratio > 4.0, ratio


def test_gradient_step_direction(lr_gradients):
  """A small step against the MC gradient lowers the exact objective; along it, raises it."""
  g = lr_gradients["baseline"].mean(0)
  eta = 0.01
  f0 = exact_objective(THETA0)
  assert exact_objective(THETA0 - eta * g) < f0 - 0.5 * eta * g @ g
  assert exact_objective(THETA0 + eta * g) > f0 + 0.5 * eta * g @ g


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("alpha, reg", [(1.0, 0.0), (0.2, 1e-3), (0.0, 0.5)])
def test_likelihood_ratio_loss_value_and_gradient_match_numpy(alpha, reg, jit):
  """J_pi value and gradient = mean(score * (alpha log pi - Q + V)) + reg term, in float64."""
  rng = np.random.default_rng(7)
  k, d, b = 3, 2, 64
  params = toy_params(rng.normal(size=k), rng.normal(size=(k, d)), rng.uniform(-1, 0, (k, d)))
  obs = np.zeros((b, 1), np.float32)
  u = rng.normal(0, 1.2, (b, d)).astype(np.float32)
  q_pi = rng.normal(0, 3, b).astype(np.float32)
  v = rng.normal(0, 3, b).astype(np.float32)
  fn = lambda p, u, q, v: losses.likelihood_ratio_policy_loss(p, toy_apply, obs, u, q, v,
                                                              alpha, reg)
  (loss, metrics), grads = maybe_jit(jax.value_and_grad(fn, has_aux=True), jit)(
      params, u, q_pi, v)
  p64 = f64(params)
  bcast = lambda x: np.broadcast_to(x, (b,) + x.shape)
  _, log_pi, score = ref_mixture(bcast(p64["logits"]), bcast(p64["means"]),
                                 bcast(p64["log_stds"]), u)
  adv = alpha * log_pi - f64(q_pi) + f64(v)
  reg_term = reg * 0.5 * (np.mean(p64["means"] ** 2) + np.mean(p64["log_stds"] ** 2))
  chex.assert_trees_all_close(f64(loss), np.mean(log_pi * adv) + reg_term, **TOL)
  chex.assert_trees_all_close(f64(metrics["policy_reg"]), reg_term, **TOL)
  chex.assert_trees_all_close(f64(metrics["log_pi"]), np.mean(log_pi), **TOL)
  # d/dtheta reg 1/2 mean(theta_bcast^2) = reg theta / (K d) for means and log-stds.
  expected = {
      "logits": np.mean(score[0] * adv[:, None], 0),
      "means": np.mean(score[1] * adv[:, None, None], 0) + reg * p64["means"] / (k * d),
      "log_stds": np.mean(score[2] * adv[:, None, None], 0) + reg * p64["log_stds"] / (k * d)}
  # Gradients of O(1-10): atol=1e-4, rtol=1e-4 (a mean of 64 float32 products).
  chex.assert_trees_all_close(f64(grads), expected, atol=1e-4, rtol=1e-4)


def test_likelihood_ratio_holds_the_sample_fixed():
  """u computed from the params (reparameterized) gives the same gradient as a constant u."""
  params = toy_params(*unflat(THETA0, 2, 1).values())
  obs = jnp.zeros((256, 1))
  eps = jax.random.normal(jax.random.PRNGKey(0), (256, 1))
  comp = jnp.arange(256) % 2

  def u_of(p):
    return p["means"][comp] + jnp.exp(p["log_stds"][comp]) * eps

  def loss(p, u):
    q_pi = q_toy(jnp.tanh(jax.lax.stop_gradient(u)[:, 0]))
    return losses.likelihood_ratio_policy_loss(p, toy_apply, obs, u, q_pi, jnp.zeros(256),
                                               ALPHA, 0.0)[0]

  g_dependent = jax.jit(jax.grad(lambda p: loss(p, u_of(p))))(params)
  g_fixed = jax.jit(jax.grad(loss))(params, u_of(params))
  chex.assert_trees_all_close(g_dependent, g_fixed, atol=1e-6, rtol=1e-6)


def test_hard_ablation_alpha_zero():
  """alpha = 0: the value target is Q exactly, and the LR advantage is -Q + V only."""
  rng = np.random.default_rng(8)
  bt = _batch(rng)
  big_log_pi = np.full(16, 1e4, np.float32)
  target = losses.soft_value_target(bt["q_pi"], big_log_pi, 0.0)
  np.testing.assert_array_equal(np.asarray(target), bt["q_pi"])
  params = toy_params(*unflat(THETA0, 2, 1).values())
  obs = jnp.zeros((16, 1))
  u = jnp.asarray(rng.normal(0, 3, (16, 1)), jnp.float32)  # log pi is far from 0 here
  q = jnp.asarray(bt["q_pi"])
  grad = lambda alpha, v: jax.grad(lambda p: losses.likelihood_ratio_policy_loss(
      p, toy_apply, obs, u, q, v, alpha, 0.0)[0])(params)
  # Q = V makes the advantage exactly zero when alpha = 0, and not when alpha > 0.
  _assert_all_zero(grad(0.0, q))
  _assert_some_nonzero(grad(1.0, q))


# ----------------------------------------------------------------------------------------------
# reparameterized vs likelihood ratio (K = 1, 2-D, separable quadratic Q)

PEAKS = np.array([0.3, -0.2])
MU1, LOG_STD1 = np.array([0.5, -0.6]), np.array([-0.5, -1.0])


def q_toy_2d(a):
  return jnp.sum(Q0 - 4.0 * (a - PEAKS) ** 2, axis=-1)


def exact_gaussian_objective(theta):
  """F for K = 1, d = 2: log pi and Q are sums over the dims, so F = sum_j F_j (1-D grids)."""
  mu, log_std = theta[:2], theta[2:]
  total = 0.0
  for j in range(2):
    log_p = stats.norm.logpdf(U_GRID, mu[j], np.exp(log_std[j]))
    integrand = np.exp(log_p) * (ALPHA * (log_p - ref_log1m_tanh2(U_GRID))
                                 - q_toy(np.tanh(U_GRID), PEAKS[j]))
    total += np.trapezoid(integrand, U_GRID)
  return total


def test_reparameterized_and_likelihood_ratio_agree_for_one_component():
  """K = 1: MC means of both policy gradients match each other and the exact grid gradient."""
  params = toy_params([0.0], MU1[None], LOG_STD1[None])
  obs = jnp.zeros((BATCH, 1))
  soft_value = -exact_gaussian_objective(np.concatenate([MU1, LOG_STD1]))

  def as_vec(g):
    return jnp.concatenate([g["means"][0], g["log_stds"][0], g["logits"]])

  @jax.jit
  @jax.vmap
  def grads(key):
    k1, k2 = jax.random.split(key)
    eps = jax.random.normal(k1, (BATCH, 2))
    g_rep = jax.grad(lambda p: losses.reparameterized_policy_loss(
        p, toy_apply, lambda o, a: q_toy_2d(a), obs, eps, ALPHA, 0.0)[0])(params)
    out = toy_apply(params, obs)
    u = gmm.sample(k2, out.logits, out.means, out.log_stds)
    g_lr = jax.grad(lambda p: losses.likelihood_ratio_policy_loss(
        p, toy_apply, obs, u, q_toy_2d(jnp.tanh(u)), jnp.full((BATCH,), soft_value), ALPHA,
        0.0)[0])(params)
    return as_vec(g_rep), as_vec(g_lr)

  g_rep, g_lr = (np.asarray(g, np.float64)
                 for g in grads(jax.random.split(jax.random.PRNGKey(7), NUM_BATCHES)))
  # With one component the logit gets no gradient at all.
  np.testing.assert_array_equal(g_rep[:, 4], 0.0)
  np.testing.assert_array_equal(g_lr[:, 4], 0.0)
  g_rep, g_lr = g_rep[:, :4], g_lr[:, :4]
  exact = exact_gradient(np.concatenate([MU1, LOG_STD1]), exact_gaussian_objective)
  se = lambda g: g.std(0, ddof=1) / np.sqrt(len(g))
  for g in (g_rep, g_lr):
    assert np.all(np.abs(g.mean(0) - exact) < 5.0 * se(g)), (g.mean(0), exact, se(g))
    assert np.all(5.0 * se(g) < 0.5 * np.abs(exact)), (se(g), exact)  # power
  # Independent samples for the two estimators: the SE of the difference is the quadrature.
  assert np.all(np.abs(g_rep.mean(0) - g_lr.mean(0))
                < 5.0 * np.sqrt(se(g_rep) ** 2 + se(g_lr) ** 2))


def test_reparameterized_loss_value_matches_numpy():
  """J_pi = mean(alpha log pi(tanh(mu + sigma eps)) - Q) + reg term, in float64."""
  rng = np.random.default_rng(9)
  params = toy_params([0.7], MU1[None], LOG_STD1[None])
  eps = rng.normal(size=(32, 2)).astype(np.float32)
  loss, metrics = jax.jit(lambda p, e: losses.reparameterized_policy_loss(
      p, toy_apply, lambda o, a: q_toy_2d(a), jnp.zeros((32, 1)), e, 0.3, 1e-2))(params, eps)
  u = MU1 + np.exp(LOG_STD1) * f64(eps)
  log_pi = (stats.norm.logpdf(u, MU1, np.exp(LOG_STD1)) - ref_log1m_tanh2(u)).sum(-1)
  q = np.sum(Q0 - 4.0 * (np.tanh(u) - PEAKS) ** 2, -1)
  reg_term = 1e-2 * 0.5 * (np.mean(MU1**2) + np.mean(LOG_STD1**2))
  chex.assert_trees_all_close(f64(loss), np.mean(0.3 * log_pi - q) + reg_term, **TOL)
  chex.assert_trees_all_close(f64(metrics["entropy"]), -np.mean(log_pi), **TOL)


def test_reparameterized_loss_rejects_mixtures():
  """reparameterized_policy_loss with K != 1 raises ValueError."""
  params = toy_params([0.0, 0.0], np.zeros((2, 1)), np.zeros((2, 1)))
  with pytest.raises(ValueError, match="num_components"):
    losses.reparameterized_policy_loss(params, toy_apply, lambda o, a: a[..., 0],
                                       jnp.zeros((4, 1)), jnp.zeros((4, 1)), 1.0, 0.0)


# ----------------------------------------------------------------------------------------------
# regularizer, temperature, Polyak


@pytest.mark.parametrize("jit", [True, False])
def test_policy_regularizer_matches_numpy(jit):
  """policy_regularizer = reg * 1/2 * (mean mu^2 + mean log_std^2)."""
  rng = np.random.default_rng(10)
  means = rng.normal(0, 2, (8, 4, 3)).astype(np.float32)
  log_stds = rng.uniform(-20, 2, (8, 4, 3)).astype(np.float32)
  out = maybe_jit(losses.policy_regularizer, jit)(means, log_stds, 1e-3)
  expected = 1e-3 * 0.5 * (np.mean(f64(means) ** 2) + np.mean(f64(log_stds) ** 2))
  chex.assert_trees_all_close(f64(out), expected, **TOL)


@pytest.mark.parametrize("jit", [True, False])
def test_policy_statistics_match_numpy(jit):
  """abs_u = mean |u| over states and dimensions; log_std = mean over states, components
  and dimensions."""
  rng = np.random.default_rng(11)
  u = rng.normal(0, 4, (8, 3)).astype(np.float32)
  log_stds = rng.uniform(-5, 2, (8, 4, 3)).astype(np.float32)
  out = maybe_jit(losses.policy_statistics, jit)(log_stds, u)
  assert set(out) == {"abs_u", "log_std"}
  chex.assert_trees_all_close(f64(out["abs_u"]), np.mean(np.abs(f64(u))), **TOL)
  chex.assert_trees_all_close(f64(out["log_std"]), np.mean(f64(log_stds)), **TOL)


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("log_pi_mean", [-3.0, 1.5])
def test_temperature_loss_value_and_gradient_sign(log_pi_mean, jit):
  """J(alpha) = -mean(log_alpha (log pi + H)); alpha rises when the entropy is below target."""
  rng = np.random.default_rng(11)
  log_pi = (log_pi_mean + rng.normal(0, 0.1, 32)).astype(np.float32)
  target_entropy = np.float32(-1.0)  # entropy -log pi below target <=> log pi + H > 0
  log_alpha = np.float32(-0.7)
  (loss, metrics), (g_alpha, g_log_pi) = maybe_jit(
      jax.value_and_grad(losses.temperature_loss, argnums=(0, 1), has_aux=True), jit)(
          log_alpha, log_pi, target_entropy)
  gap = f64(log_pi) + float(target_entropy)
  chex.assert_trees_all_close(f64(loss), -np.mean(float(log_alpha) * gap), **TOL)
  chex.assert_trees_all_close(f64(g_alpha), -np.mean(gap), **TOL)
  chex.assert_trees_all_close(f64(metrics["alpha"]), np.exp(float(log_alpha)), **TOL)
  _assert_all_zero(g_log_pi)
  entropy_below_target = -np.mean(f64(log_pi)) < float(target_entropy)
  assert entropy_below_target == (log_pi_mean > 1.0)
  # Gradient descent raises log alpha exactly when the entropy is below the target.
  assert (float(g_alpha) < 0.0) == entropy_below_target


@pytest.mark.parametrize("jit", [True, False])
def test_polyak_update(jit):
  """The target update the learners use, optax.incremental_update(new, old, tau) =
  tau p + (1 - tau) t leaf-wise (argument order pinned); tau = 1 copies, tau = 0 keeps."""
  rng = np.random.default_rng(12)
  make = lambda: {"a": rng.normal(size=(3, 4)).astype(np.float32),
                  "b": [rng.normal(size=5).astype(np.float32),
                        {"c": np.float32(rng.normal())}]}
  params, target = make(), make()
  fn = maybe_jit(optax.incremental_update, jit)
  out = fn(params, target, jnp.float32(0.01))
  chex.assert_trees_all_equal_structs(out, target)
  chex.assert_trees_all_close(f64(out), jax.tree.map(lambda p, t: 0.01 * p + 0.99 * t,
                                                     f64(params), f64(target)), **TOL)
  chex.assert_trees_all_equal(fn(params, target, 1.0), params)
  chex.assert_trees_all_equal(fn(params, target, 0.0), target)
