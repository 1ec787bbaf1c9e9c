"""Tests of the marginalized reparameterized ("MRP") mixture policy gradient (He et al. 2026),
losses.mixture_reparameterized_policy_loss, and of its wiring into Agent.gradient_step.

References, all independent of the code under test: the loss value and its gradient worked
out analytically in float64 numpy/scipy (full-dependence form); the exact gradient of
E_{a~pi}[alpha log pi(a) - Q(a)] integrated on a fine float64 grid and differentiated by
finite differences (tests/test_losses.py); the K = 1 reparameterized loss.

Tolerances: float32 against float64 values of O(10), atol=1e-4, rtol=1e-5; gradients,
atol=1e-4, rtol=1e-4 (as in test_losses.py). Monte-Carlo comparisons use 5 standard errors
from the samples themselves, with a power check: the standard error is small next to every
entry tested, and a deliberately wrong gradient is rejected by the same test.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from sac_jax import agent, gmm, losses, networks, replay
from test_losses import (ALPHA, BATCH, NUM_BATCHES, PEAKS, Q0, THETA0, exact_gradient,
                         exact_objective, f64, maybe_jit, q_toy, ref_mixture, toy_apply,
                         toy_params, unflat)

TOL = dict(atol=1e-4, rtol=1e-5)
GRAD_TOL = dict(atol=1e-4, rtol=1e-4)


def mrp_loss(params, apply, q_fn, obs, eps, alpha, reg):
  # Looked up at call time, so a scratch script can monkeypatch the loss under test.
  return losses.mixture_reparameterized_policy_loss(params, apply, q_fn, obs, eps, alpha,
                                                    reg)


# ----------------------------------------------------------------------------------------------
# the exact form: value and gradient against float64 numpy


def q_of_state(obs, action):
  """Q(s, a) = sum_j Q0 - 4 (a_j - PEAKS_j - 0.2 s_0)^2: the peak moves with the state, so
  pairing a state with another state's actions changes the loss."""
  return jnp.sum(Q0 - 4.0 * (action - PEAKS - 0.2 * obs[:, :1]) ** 2, axis=-1)


def ref_mrp(p64, obs, eps, alpha, reg):
  """float64 loss and gradient of mean_b sum_k w_k h(s_b, a_bk) + reg term, full dependence.

  h(s, u) = alpha log pi(tanh u) - Q(s, tanh u) (Q of q_of_state), u_bk = mu_k + sigma_k
  eps_bk. The gradient is the sum of the weights' term sum_k (grad w_k) h_k, the pathwise
  term w_k (dh/du)(u_k) (du_k/dtheta), and the direct term alpha sum_k w_k
  (d log p / dtheta)(u_k) with u_k held fixed (the mixture score of ref_mixture).
  """
  logits, means, log_stds = p64["logits"], p64["means"], p64["log_stds"]
  b, k, d = eps.shape
  sigma = np.exp(log_stds)
  u = means + sigma * eps                                               # [B, K, d]
  bc = lambda x: np.broadcast_to(x, (b, k) + x.shape)
  _, log_pi, (s_logits, s_means, s_log_stds) = ref_mixture(bc(logits), bc(means),
                                                           bc(log_stds), u)  # [B, K(, K, d)]
  a = np.tanh(u)
  peak = PEAKS + 0.2 * obs[:, None, :1]                                 # [B, 1, d]
  h = alpha * log_pi - np.sum(Q0 - 4.0 * (a - peak) ** 2, -1)           # [B, K]
  w = np.exp(logits - logsumexp(logits))
  # dh/du: d log p / du = -sum_m r_m z_m / sigma_m = -sum_m (score wrt mu_m);
  # -d log(1 - tanh^2 u)/du = 2 tanh u; dQ/du = -8 (a - peak) (1 - a^2).
  dh_du = (alpha * (-s_means.sum(-2) + 2.0 * a)
           + 8.0 * (a - peak) * (1.0 - a ** 2))                          # [B, K, d]
  reg_term = reg * 0.5 * (np.mean(means ** 2) + np.mean(log_stds ** 2))
  loss = np.mean(h @ w) + reg_term
  dw = np.diag(w) - np.outer(w, w)                                      # dw_k / dlogit_m
  wk = w[None, :, None]
  grads = {
      "logits": np.mean(h @ dw, 0) + alpha * np.mean(np.einsum("k,bkm->bm", w, s_logits), 0),
      "means": (np.mean(wk * dh_du, 0)
                + alpha * np.mean(np.einsum("k,bkmj->bmj", w, s_means), 0)
                + reg * means / (k * d)),
      "log_stds": (np.mean(wk * dh_du * sigma * eps, 0)
                   + alpha * np.mean(np.einsum("k,bkmj->bmj", w, s_log_stds), 0)
                   + reg * log_stds / (k * d))}
  return loss, grads, np.mean(log_pi @ w), reg_term


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize("alpha, reg", [(1.0, 0.0), (0.3, 1e-2)])
def test_mrp_loss_value_and_gradient_match_numpy(alpha, reg, jit):
  """K = 3, d = 2, a state-dependent Q: value, metrics and gradient equal the float64
  full-dependence reference.

  This pins the form: the gradient of the form with the direct (score) term stopped differs
  from it by the mean-zero term, which is far above the tolerance on a batch of 16.
  """
  rng = np.random.default_rng(0)
  k, d, b = 3, 2, 16
  params = toy_params(rng.normal(size=k), rng.normal(0, 0.7, (k, d)),
                      rng.uniform(-1, 0, (k, d)))
  eps = rng.normal(size=(b, k, d)).astype(np.float32)
  obs = rng.normal(size=(b, 1)).astype(np.float32)
  fn = lambda p, e: mrp_loss(p, toy_apply, q_of_state, obs, e, alpha, reg)
  (loss, metrics), grads = maybe_jit(jax.value_and_grad(fn, has_aux=True), jit)(params, eps)
  ref_loss, ref_grads, ref_log_pi, ref_reg = ref_mrp(f64(params), f64(obs), f64(eps), alpha,
                                                     reg)
  chex.assert_trees_all_close(f64(loss), ref_loss, **TOL)
  chex.assert_trees_all_close(f64(metrics["policy_loss"]), ref_loss, **TOL)
  chex.assert_trees_all_close(f64(metrics["policy_reg"]), ref_reg, **TOL)
  chex.assert_trees_all_close(f64(metrics["log_pi"]), ref_log_pi, **TOL)
  chex.assert_trees_all_close(f64(metrics["entropy"]), -ref_log_pi, **TOL)
  chex.assert_trees_all_close(f64(grads), ref_grads, **GRAD_TOL)


def test_mrp_rejects_eps_of_the_wrong_shape():
  """eps must be [B, K, d]: one draw per component."""
  params = toy_params([0.0, 0.0], np.zeros((2, 1)), np.zeros((2, 1)))
  with pytest.raises(AssertionError):
    mrp_loss(params, toy_apply, lambda o, a: a[..., 0], jnp.zeros((4, 1)),
             jnp.zeros((4, 1, 1)), 1.0, 0.0)


# ----------------------------------------------------------------------------------------------
# unbiasedness and variance on the 1-D toy of test_losses.py (K = 2, alpha = 1, quadratic Q)


def _as_vec(g):
  return jnp.concatenate([g["logits"], g["means"][:, 0], g["log_stds"][:, 0]])


@pytest.fixture(scope="module")
def toy_gradients():
  """Per-batch gradients (NUM_BATCHES x BATCH states) of the MRP loss, of its weights' term
  alone, and of the likelihood-ratio loss with the exact soft value as baseline."""
  params = toy_params(*unflat(THETA0, 2, 1).values())
  obs = jnp.zeros((BATCH, 1))
  q_fn = lambda o, a: q_toy(a[:, 0])
  soft_value = -exact_objective(THETA0)  # V = E[Q - alpha log pi]

  @jax.jit
  @jax.vmap
  def batch_grads(key):
    k_mrp, k_lr = jax.random.split(key)
    eps = jax.random.normal(k_mrp, (BATCH, 2, 1))
    g_mrp = jax.grad(lambda p: mrp_loss(p, toy_apply, q_fn, obs, eps, ALPHA, 0.0)[0])(params)

    # The weights' term sum_k (grad w_k) h_k alone, computed here from gmm directly.
    def weights_term(p):
      out = toy_apply(p, obs)
      u = out.means + jnp.exp(out.log_stds) * eps
      log_pi = gmm.squashed_log_prob(out.logits[:, None], out.means[:, None],
                                     out.log_stds[:, None], u)
      h = jax.lax.stop_gradient(ALPHA * log_pi - q_toy(jnp.tanh(u[..., 0])))
      return jnp.mean(jnp.sum(jax.nn.softmax(out.logits) * h, -1))

    g_weights = jax.grad(weights_term)(params)
    out = toy_apply(params, obs)
    u = gmm.sample(k_lr, out.logits, out.means, out.log_stds)
    g_lr = jax.grad(lambda p: losses.likelihood_ratio_policy_loss(
        p, toy_apply, obs, u, q_toy(jnp.tanh(u[:, 0])), jnp.full((BATCH,), soft_value), ALPHA,
        0.0)[0])(params)
    return _as_vec(g_mrp), _as_vec(g_weights), _as_vec(g_lr)

  g_mrp, g_weights, g_lr = (np.asarray(g, np.float64) for g in batch_grads(
      jax.random.split(jax.random.PRNGKey(2605), NUM_BATCHES)))
  return dict(mrp=g_mrp, no_weights=g_mrp - g_weights, lr=g_lr, exact=exact_gradient(THETA0))


def _within_5_se(g, exact):
  se = g.std(0, ddof=1) / np.sqrt(len(g))
  return np.abs(g.mean(0) - exact) < 5.0 * se, se


def test_mrp_gradient_is_unbiased(toy_gradients):
  """MC mean of the MRP gradient = exact grad of E[alpha log pi - Q] (grid + FD), 5 SE.

  Power: 5 SE is below half of every exact entry, and the same test rejects the gradient
  with the weights' term dropped (its logit entries have mean zero; exact: +-0.52).
  """
  g, exact = toy_gradients["mrp"], toy_gradients["exact"]
  ok, se = _within_5_se(g, exact)
  assert np.all(ok), (g.mean(0), exact, se)
  assert np.all(5.0 * se < 0.5 * np.abs(exact)), (se, exact)
  ok_wrong, _ = _within_5_se(toy_gradients["no_weights"], exact)
  assert not np.all(ok_wrong)
  assert not np.any(ok_wrong[:2])  # both logit entries are rejected


def test_mrp_variance_is_lower_than_likelihood_ratio(toy_gradients):
  """Per-state gradient variance: MRP vs likelihood ratio with the exact V baseline.

  Batches hold iid states, so per-batch variance ratios are per-state ratios. Measured on
  this toy with 2e6 states per estimator: total variance ratio LR / MRP 5.8 (bootstrap 95%
  interval 5.5-6.2; 4.5-6.6 over seeds at this test's 2e5 states); per entry: means 6.2 and
  9.8, log-stds 5.5 and 10.7, logits 0.9 (no gain there: with the exact baseline the LR
  logit gradient is already good). MRP evaluates Q K = 2 times per state, LR once. Asserted
  with margin: total > 3, every mean and log-std entry > 2.5.
  """
  var_mrp = toy_gradients["mrp"].var(0, ddof=1)
  var_lr = toy_gradients["lr"].var(0, ddof=1)
  assert var_lr.sum() / var_mrp.sum() > 3.0, var_lr.sum() / var_mrp.sum()
  assert np.all(var_lr[2:] / var_mrp[2:] > 2.5), var_lr / var_mrp


# ----------------------------------------------------------------------------------------------
# K = 1: exactly the reparameterized Gaussian loss


@pytest.mark.parametrize("kind", ["networks", "toy"])
def test_one_component_equals_reparameterized_loss(kind):
  """K = 1: value, metrics and gradient equal reparameterized_policy_loss fed the same eps
  (float32: atol=1e-6, rtol=1e-6). "networks": flax policy and twin-Q minimum, jitted,
  alpha 0.2, reg 1e-3; "toy": state-free policy, state-dependent Q, unjitted, alpha 1."""
  kp, kq, ke, ko = jax.random.split(jax.random.PRNGKey(3), 4)
  obs = jax.random.normal(ko, (32, 3))
  eps = jax.random.normal(ke, (32, 1, 2))
  if kind == "networks":
    n = networks.make_networks(action_dim=2, num_components=1, hidden_sizes=(16, 16),
                               num_q=2)
    params, apply, alpha, reg, jit = n.policy.init(kp, obs[:1]), n.policy.apply, 0.2, 1e-3, True
    qp = n.q.init(kq, obs[:1], jnp.zeros((1, 2)))
    q_fn = lambda o, a: jnp.min(n.q.apply(qp, o, a), axis=0)
  else:
    params = toy_params([0.4], [[0.5, -0.6]], [[-0.5, -1.0]])
    apply, q_fn, alpha, reg, jit = toy_apply, q_of_state, 1.0, 0.0, False

  def both(p):
    mrp = jax.value_and_grad(mrp_loss, has_aux=True)(p, apply, q_fn, obs, eps, alpha, reg)
    rep = jax.value_and_grad(losses.reparameterized_policy_loss, has_aux=True)(
        p, apply, q_fn, obs, eps[:, 0], alpha, reg)
    return mrp, rep

  ((loss, metrics), grads), ((ref_loss, ref_metrics), ref_grads) = maybe_jit(both, jit)(
      params)
  close = dict(atol=1e-6, rtol=1e-6)
  chex.assert_trees_all_close(loss, ref_loss, **close)
  chex.assert_trees_all_close(metrics, ref_metrics, **close)
  chex.assert_trees_all_close(grads, ref_grads, **close)
  assert any(np.any(np.asarray(g) != 0.0) for g in jax.tree.leaves(grads))


# ----------------------------------------------------------------------------------------------
# inside the agent


OBS, ACT, M, B = 3, 2, 2, 8


def _batch(seed):
  rng = np.random.default_rng(seed)
  f32 = lambda *s: rng.normal(size=(M,) + s).astype(np.float32)
  return replay.Transition(f32(B, OBS), np.tanh(f32(B, ACT)), f32(B), f32(B, OBS),
                           (rng.random((M, B)) < 0.2).astype(np.float32))


# Each value of num_q and of auto_alpha once (the two settings do not interact in the MRP
# branch; each setting is a compile of its own, most of this file's time on a cold cache).
@pytest.mark.parametrize("num_q, auto_alpha", [(1, False), (2, True)])
def test_gradient_step_with_mrp(num_q, auto_alpha):
  """jit(vmap(gradient_step)) with K = 3: finite metrics, every member's policy moves
  (and log alpha, with auto_alpha); with twin Q and auto_alpha member 0 also equals the
  unbatched jitted step."""
  config = agent.SACConfig(num_components=3, policy_gradient="mixture_reparameterized",
                           num_q=num_q, auto_alpha=auto_alpha, hidden_sizes=(8,),
                           batch_size=B, buffer_size=64, start_steps=10)
  ag = agent.Agent(config, OBS, ACT)
  state = ag.init_members(jax.random.split(jax.random.PRNGKey(5), M))
  batch = _batch(num_q + 2 * auto_alpha)
  keys = jax.random.split(jax.random.PRNGKey(6), M)
  new_state, metrics = jax.jit(jax.vmap(ag.gradient_step))(state, batch, keys)
  for name in ("policy_loss", "entropy", "log_pi", "v_loss", "q_loss", "alpha"):
    assert name in metrics, name
  for name, value in metrics.items():
    assert np.all(np.isfinite(np.asarray(value))), (name, value)
  for i in range(M):
    moved = [np.any(np.asarray(a)[i] != np.asarray(b)[i]) for a, b in zip(
        jax.tree.leaves(state.policy_params), jax.tree.leaves(new_state.policy_params))]
    assert all(moved), moved
  alpha_moved = np.asarray(new_state.log_alpha) != np.asarray(state.log_alpha)
  assert np.all(alpha_moved) if auto_alpha else not np.any(alpha_moved)
  if not (num_q == 2 and auto_alpha):
    return
  single, single_metrics = jax.jit(ag.gradient_step)(agent.member(state, 0),
                                                     agent.member(batch, 0), keys[0])
  # vmap may reorder float32 reductions: 1e-5 relative, 1e-6 absolute.
  chex.assert_trees_all_close(agent.member(new_state, 0), single, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(agent.member(metrics, 0), single_metrics, rtol=1e-5, atol=1e-6)


def test_config_accepts_any_number_of_components():
  """mixture_reparameterized is a known policy gradient, valid for K = 1 and K = 4."""
  assert "mixture_reparameterized" in agent.POLICY_GRADIENTS
  for k in (1, 4):
    agent.SACConfig(num_components=k, policy_gradient="mixture_reparameterized")


def test_overlay_flagfile_selects_mrp_and_keeps_the_mixture():
  """hopper.flags then mixture_mrp.flags: the MRP gradient, K = 4 and the rest of the paper
  setting; the runner's --policy_gradient accepts the name and the config validates."""
  root = pathlib.Path(__file__).resolve().parent.parent
  code = ("import sys; from absl import flags; import experiments.run as r; "
          "flags.FLAGS(sys.argv); v = r.flag_values(); from sac_jax import agent; "
          "c = agent.SACConfig(num_components=v['num_components'], "
          "policy_gradient=v['policy_gradient']); "
          "print(v['env_id'], c.num_components, c.policy_gradient, v['num_q'], "
          "v['auto_alpha'], v['reward_scale'])")
  out = subprocess.run(
      [sys.executable, "-c", code, "--flagfile=experiments/flags/hopper.flags",
       "--flagfile=experiments/flags/mixture_mrp.flags"],
      cwd=root, capture_output=True, text=True, check=True).stdout.split()
  assert out == ["Hopper-v5", "4", "mixture_reparameterized", "1", "False", "1.0"], out
