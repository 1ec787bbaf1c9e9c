"""One `Agent.gradient_step` against an independent float64 numpy reference.

The reference re-implements the networks (flax Dense layers: x @ kernel + bias, ReLU), the
policy head (soft-clipped log-stds), the mixture density and the three (four) losses of
DESIGN.md section 1, and backpropagates through them by hand, all in float64 numpy. It
shares nothing with the library but the parameter pytrees and the random draws (the u or
eps that the step draws from its key, recomputed here from the same key).

Comparing one Adam step from a fresh optimizer state only sees lr * sign(g), which is blind
to a constant factor in a gradient. So every optimizer state is given a known second
moment before the step: with mu = 0, count = 0 and nu = S^2 (1 - b2) / b2, the first Adam
update is exactly -lr * g / (sqrt(S^2 + g^2) + eps), an invertible function of g. The test
inverts it (float64) and compares the gradients the step used with the reference ones.
Each network has its own learning rate, so a learning rate taken from the wrong one shows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import expit, logsumexp

from sac_jax import agent, gmm, replay

OBS, ACT, B = 3, 2, 16
HIDDEN = (16, 16)
LRS = dict(lr_policy=0.5, lr_q=0.25, lr_v=1.0, lr_alpha=0.1)  # all distinct on purpose
S = 1.0        # the scale of the crafted second moment (gradient units) of the networks
S_ALPHA = 10.0  # and of log alpha, whose gradient -mean(log pi + target entropy) is O(1-10)
# Gradients recovered from the float32 step vs the float64 reference: the worst absolute
# error measured is 1.5e-7 (gradients up to 0.4), mostly the float32 parameter difference
# (ulp 6e-8 at |w| ~ 0.5, divided by lr). atol 2e-6 and rtol 1e-4 leave a 10x margin and are
# far below the factor-2 (a missing 1/2), factor-B (a sum instead of a mean), wrong-head and
# wrong-alpha errors.
RTOL, ATOL = 1e-4, 2e-6


# ------------------------------------------------------------------------------ numpy nets


def _f64(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _relu_net(p, x):
  """flax MLP (ReLU after each hidden layer) + output Dense, float64.

  p: {"MLP_0": {"Dense_i": {kernel, bias}}, "Dense_0": {kernel, bias}}.
  Returns (out, backward) where backward(d_out) -> (grads like p, d_x).
  """
  names = sorted(p["MLP_0"], key=lambda n: int(n.split("_")[1]))
  hs, zs = [x], []
  for n in names:
    z = hs[-1] @ p["MLP_0"][n]["kernel"] + p["MLP_0"][n]["bias"]
    zs.append(z)
    hs.append(np.maximum(z, 0.0))
  out = hs[-1] @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]

  def backward(d_out):
    g = {"Dense_0": {"kernel": hs[-1].T @ d_out, "bias": d_out.sum(0)}, "MLP_0": {}}
    d_h = d_out @ p["Dense_0"]["kernel"].T
    for i in reversed(range(len(names))):
      d_z = d_h * (zs[i] > 0)
      g["MLP_0"][names[i]] = {"kernel": hs[i].T @ d_z, "bias": d_z.sum(0)}
      d_h = d_z @ p["MLP_0"][names[i]]["kernel"].T
    return g, d_h

  return out, backward


def _v(params, obs):
  out, back = _relu_net(_f64(params)["params"], obs)
  return out[:, 0], lambda d: {"params": back(d[:, None])[0]}


def _q_heads(params, obs, action):
  """Per head: (q [B], backward(d_q) -> (head grads, d_action))."""
  p = _f64(params)["params"]["Vmap_QHead_0"]
  num_q = p["Dense_0"]["bias"].shape[0]
  x = np.concatenate([obs, action], axis=-1)
  heads = []
  for h in range(num_q):
    out, back = _relu_net(jax.tree.map(lambda a, h=h: a[h], p), x)
    def head_back(d, back=back):
      g, d_x = back(d[:, None])
      return g, d_x[:, obs.shape[-1]:]
    heads.append((out[:, 0], head_back))
  return heads


def _stack_q_grads(head_grads):
  return {"params": {"Vmap_QHead_0": jax.tree.map(lambda *g: np.stack(g), *head_grads)}}


def _softplus(x):
  return np.logaddexp(0.0, x)


def _policy(params, obs, k, d, low, high):
  """(logits [B,K], means [B,K,d], log_stds [B,K,d], dlog_std/draw, backward(d_out))."""
  out, back = _relu_net(_f64(params)["params"], obs)
  logits = out[:, :k]
  means = out[:, k:k + k * d].reshape(-1, k, d)
  raw = out[:, k + k * d:].reshape(-1, k, d)
  log_stds = low + _softplus(raw - low) - _softplus(raw - high)
  dclip = expit(raw - low) - expit(raw - high)

  def backward(d_logits, d_means, d_log_stds):
    n = obs.shape[0]
    d_out = np.concatenate([d_logits, d_means.reshape(n, -1),
                            (d_log_stds * dclip).reshape(n, -1)], axis=-1)
    return {"params": back(d_out)[0]}

  return logits, means, log_stds, backward


def _log1m_tanh2(u):
  """log(1 - tanh(u)^2) = log sech(u)^2 = log 4 - 2 log(e^u + e^-u)."""
  return np.log(4.0) - 2.0 * np.logaddexp(u, -u)


def _mixture_log_pi(logits, means, log_stds, u):
  """log pi(tanh u|s) and the score d log p(u) / d(logits, means, log_stds), u fixed."""
  log_w = logits - logsumexp(logits, axis=-1, keepdims=True)
  sigma = np.exp(log_stds)
  comp = log_w + stats.norm.logpdf(u[:, None, :], means, sigma).sum(-1)
  log_p = logsumexp(comp, axis=-1)
  r = np.exp(comp - log_p[:, None])
  z = (u[:, None, :] - means) / sigma
  score = (r - np.exp(log_w), r[..., None] * z / sigma, r[..., None] * (z ** 2 - 1.0))
  return log_p - _log1m_tanh2(u).sum(-1), score


def _reparam_u(ag, state, batch, eps):
  """u = mu + sigma eps of the K = 1 policy, float64."""
  c = ag.config
  _, means, log_stds, _ = _policy(state.policy_params, np.asarray(batch.obs, np.float64),
                                  c.num_components, ag.act_dim, c.log_std_min,
                                  c.log_std_max)
  return means[:, 0] + np.exp(log_stds[:, 0]) * eps


# ---------------------------------------------------------------------------- the reference


def reference_step(ag, state, batch, u=None, eps=None):
  """float64 gradients of J_V, J_Q, J_pi (and J(alpha)), all at the pre-update params."""
  c, h = ag.config, _f64(state.hparams)
  k, d = c.num_components, ag.act_dim
  obs, act, rew, nobs, term = (np.asarray(x, np.float64) for x in batch)
  n = obs.shape[0]
  alpha = (np.exp(np.float64(state.log_alpha)) if c.auto_alpha else float(h.alpha))
  logits, means, log_stds, p_back = _policy(state.policy_params, obs, k, d,
                                            c.log_std_min, c.log_std_max)
  if c.policy_gradient == "reparameterized":
    u = means[:, 0] + np.exp(log_stds[:, 0]) * eps
  log_pi, score = _mixture_log_pi(logits, means, log_stds, u)
  a_pi = np.tanh(u)

  # Twin Q: the minimum over heads of Q(s, a_pi), per sample.
  heads_pi = _q_heads(state.q_params, obs, a_pi)
  q_pi_heads = np.stack([q for q, _ in heads_pi])          # [num_q, B]
  argmin = np.argmin(q_pi_heads, axis=0)
  q_pi = q_pi_heads.min(0)

  # J_V = mean 1/2 (V(s) - (Q(s, a_pi) - alpha log pi))^2.
  v, v_back = _v(state.v_params, obs)
  v_target = q_pi - alpha * log_pi
  g_v = v_back((v - v_target) / n)
  v_loss = 0.5 * np.mean((v - v_target) ** 2)

  # J_Q = sum_h mean 1/2 (Q_h(s, a) - (c r + gamma (1 - done) V_target(s')))^2.
  v_next, _ = _v(state.v_target_params, nobs)
  y = h.reward_scale * rew + h.gamma * (1.0 - term) * v_next
  q_heads = _q_heads(state.q_params, obs, act)
  g_q = _stack_q_grads([back((q - y) / n)[0] for q, back in q_heads])
  q_loss = sum(0.5 * np.mean((q - y) ** 2) for q, _ in q_heads)

  # The policy: reg * 1/2 (mean mu^2 + mean log_std^2) plus the surrogate's gradient.
  d_means = h.reg * means / means.size
  d_log_stds = h.reg * log_stds / log_stds.size
  if c.policy_gradient == "reparameterized":
    # J = mean alpha log pi(tanh(u)|s) - min_h Q_h(s, tanh(u)), u = mu + sigma eps, K = 1:
    # log pi = -sum log_std - 1/2 |eps|^2 - const - sum log(1 - tanh(u)^2).
    sigma = np.exp(log_stds[:, 0])
    d_a = np.zeros_like(a_pi)
    for hd, (_, back) in enumerate(heads_pi):
      sel = (argmin == hd).astype(np.float64)[:, None]
      d_a += sel * back(np.ones(n))[1]                      # dQ_min / da
    d_u = (alpha * 2.0 * np.tanh(u) - d_a * (1.0 - a_pi ** 2)) / n
    d_means[:, 0] += d_u
    d_log_stds[:, 0] += d_u * sigma * eps - alpha / n
    d_logits = np.zeros_like(logits)
  else:
    # J = mean log pi(u|s) * (alpha log pi - Q + V), the bracket and u held fixed.
    adv = alpha * log_pi - q_pi + v
    w = (adv / n)[:, None]
    d_logits = w * score[0]
    d_means += w[..., None] * score[1]
    d_log_stds += w[..., None] * score[2]
  g_p = p_back(d_logits, d_means, d_log_stds)
  g_alpha = -np.mean(log_pi + ag.target_entropy)            # d/dlog_alpha of J(alpha)
  return dict(v=g_v, q=g_q, policy=g_p, alpha=g_alpha, argmin=argmin, v_loss=v_loss,
              q_loss=q_loss, alpha_used=alpha)


# ---------------------------------------------------------------------------- helpers


def _linear_adam(opt_state, scale=S):
  """An Adam state (fresh count and mu) whose first update is -lr g / sqrt(S^2 + g^2)."""
  b2 = 0.999  # optax.scale_by_adam's default (agent.adam)
  nu = jax.tree.map(lambda x: jnp.full_like(x, scale ** 2 * (1 - b2) / b2), opt_state.nu)
  return opt_state._replace(nu=nu)


def _gradient_used(old, new, lr, scale=S):
  """Inverts new = old - lr g / sqrt(S^2 + g^2) in float64 (Adam's eps 1e-8: negligible)."""
  x = (np.asarray(old, np.float64) - np.asarray(new, np.float64)) / lr
  assert np.all(np.abs(x) < 0.999), "update outside the invertible range: raise S"
  return scale * x / np.sqrt(1.0 - x ** 2)


def _assert_gradients(name, old, new, lr, expected):
  got = jax.tree.map(lambda o, n: _gradient_used(o, n, lr), old, new)
  flat_got, flat_exp = jax.tree.leaves(got), jax.tree.leaves(expected)
  assert len(flat_got) == len(flat_exp)
  for (path, g), e in zip(jax.tree_util.tree_leaves_with_path(got), flat_exp):
    np.testing.assert_allclose(
        g, e, rtol=RTOL, atol=ATOL,
        err_msg=f"{name} gradient at {jax.tree_util.keystr(path)}")


def _batch(rng):
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return replay.Transition(f32(rng.normal(size=(B, OBS))),
                           f32(rng.uniform(-1, 1, (B, ACT))), f32(rng.normal(size=B)),
                           f32(rng.normal(size=(B, OBS))), f32(rng.uniform(size=B) < 0.3))


CASES = {
    # The paper: K = 3 mixture, likelihood-ratio gradient, one Q, fixed alpha.
    "paper": dict(num_components=3),
    # Twin Q (min in the V target and in the policy's Q), automatic temperature.
    "twin_auto_alpha": dict(num_components=3, num_q=2, auto_alpha=True),
    # The reparameterized Gaussian with twin Q and automatic temperature (SAC 2018).
    "reparameterized": dict(num_components=1, num_q=2, auto_alpha=True,
                            policy_gradient="reparameterized"),
    # update_order 'sequential': V and Q step first, the policy reads the updated critic.
    "paper_sequential": dict(num_components=3, update_order="sequential"),
    "reparameterized_sequential": dict(num_components=1, num_q=2, auto_alpha=True,
                                       policy_gradient="reparameterized",
                                       update_order="sequential"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_step_matches_float64_reference(case):
  """Each gradient and the new log alpha of one step equal the float64 reference at the
  OLD params (with update_order 'sequential', the policy's gradient at the OLD policy and
  the NEW V and Q: the reference rerun on the critic the step produced, which the V and Q
  checks have just verified); V_target <- tau V_new + (1 - tau) V_target_old; twin Q takes the per-sample
  minimum (in the V target, the likelihood-ratio bracket and the reparameterized loss)."""
  cfg = agent.SACConfig(hidden_sizes=HIDDEN, batch_size=B, buffer_size=64,
                        reward_scale=3.0, tau=0.3, gamma=0.9, alpha=0.5, reg=0.3,
                        **CASES[case])
  ag = agent.Agent(cfg, OBS, ACT)
  hp = agent.HParams.from_config(cfg)._replace(**LRS)
  state = ag.init(jax.random.PRNGKey(0), hp)
  rng = np.random.default_rng(1)
  batch = _batch(rng)
  key = jax.random.PRNGKey(7)
  # The step's own draws, recomputed from its key.
  out = ag.nets.policy.apply(state.policy_params, batch.obs)
  if cfg.policy_gradient == "reparameterized":
    eps, u = np.asarray(jax.random.normal(key, (B, ACT)), np.float64), None
  else:
    u = gmm.sample(key, out.logits, out.means, out.log_stds)
    eps, u = None, np.asarray(u, np.float64)
  state = state._replace(
      # V_target differs from V, so a wrong network in the Q target shows.
      v_target_params=jax.tree.map(lambda x: x + 0.3 * jnp.sign(x), state.v_params),
      # A log alpha that is not the config's alpha: the step must use exp(log_alpha).
      log_alpha=(jnp.asarray(np.log(0.2), jnp.float32) if cfg.auto_alpha
                 else state.log_alpha),
      policy_opt_state=_linear_adam(state.policy_opt_state),
      q_opt_state=_linear_adam(state.q_opt_state),
      v_opt_state=_linear_adam(state.v_opt_state),
      alpha_opt_state=_linear_adam(state.alpha_opt_state, S_ALPHA))
  if cfg.num_q == 2:
    # Shift head 0 so that it is the smaller head on half of the sampled actions.
    a_pi = np.tanh(u if u is not None else _reparam_u(ag, state, batch, eps))
    obs = np.asarray(batch.obs, np.float64)
    q0, q1 = (q for q, _ in _q_heads(state.q_params, obs, a_pi))
    qp = jax.tree.map(lambda x: x, state.q_params)
    head_bias = qp["params"]["Vmap_QHead_0"]["Dense_0"]
    head_bias["bias"] = head_bias["bias"].at[0].add(np.float32(np.median(q1 - q0)))
    state = state._replace(q_params=qp)

  new, metrics = jax.jit(ag.gradient_step)(state, batch, key)
  ref = reference_step(ag, state, batch, u, eps)
  if cfg.num_q == 2:
    counts = np.bincount(ref["argmin"], minlength=2)
    assert np.all(counts >= 4), f"both heads must be the minimum somewhere: {counts}"

  _assert_gradients("V", state.v_params, new.v_params, LRS["lr_v"], ref["v"])
  _assert_gradients("Q", state.q_params, new.q_params, LRS["lr_q"], ref["q"])
  if cfg.update_order == "sequential":
    read = state._replace(q_params=new.q_params, v_params=new.v_params)
    ref_policy = reference_step(ag, read, batch, u, eps)["policy"]
    # The updated critic must move the policy's gradient well beyond the tolerance, or
    # this case could not tell the two orders apart.
    gap = max(np.max(np.abs(a - b)) for a, b in zip(jax.tree.leaves(ref_policy),
                                                     jax.tree.leaves(ref["policy"])))
    assert gap > 1e3 * ATOL, gap
  else:
    ref_policy = ref["policy"]
  _assert_gradients("policy", state.policy_params, new.policy_params, LRS["lr_policy"],
                    ref_policy)
  # Polyak: V_target <- tau V_new + (1 - tau) V_target_old (float32 arithmetic: 1e-6).
  expected_target = jax.tree.map(lambda v, t: 0.3 * np.float64(v) + 0.7 * np.float64(t),
                                 new.v_params, state.v_target_params)
  for got, exp in zip(jax.tree.leaves(new.v_target_params),
                      jax.tree.leaves(expected_target)):
    np.testing.assert_allclose(got, exp, rtol=1e-6, atol=1e-6)
  # Loss values of the metrics (float32 sums of 16 terms of O(1-10): rtol 1e-5).
  np.testing.assert_allclose(metrics["v_loss"], ref["v_loss"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["q_loss"], ref["q_loss"], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["alpha"], ref["alpha_used"], rtol=1e-6)
  if cfg.auto_alpha:
    # One Adam step on J(alpha) = -mean log_alpha (log pi + target entropy), from the
    # sampled actions' log pi (float64), with the crafted second moment.
    g = _gradient_used(state.log_alpha, new.log_alpha, LRS["lr_alpha"], S_ALPHA)
    np.testing.assert_allclose(g, ref["alpha"], rtol=RTOL, atol=ATOL)
    assert abs(ref["alpha"]) > 0.1   # a real gradient, not a vanishing one
  else:
    assert float(new.log_alpha) == float(state.log_alpha)

