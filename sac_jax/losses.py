"""SAC losses as pure functions of params (the first argument) and arrays.

Each loss returns `(loss, metrics)`. Equations refer to Haarnoja et al., "Soft Actor-Critic"
(2018), with the two corrections of docs/algorithm.md: the Q target uses the target V of
the NEXT state (eq. 9), and the likelihood-ratio bracket is (alpha log pi - Q + V) (eq. 13).

Shapes: a minibatch of B transitions; Q heads return [num_q, B]; everything else is [B].
`reward_scale`, `gamma`, `alpha`, `tau` and `reg` are scalars (per member under vmap).
The policy losses take `squash` (static): "exact" or "capped", gmm.squashed_log_prob's.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp

from sac_jax import gmm

Metrics = dict[str, jax.Array]
Params = Any
sg = jax.lax.stop_gradient


def soft_q_target(reward: jax.Array, terminated: jax.Array, v_target_next: jax.Array,
                  reward_scale: jax.Array, gamma: jax.Array) -> jax.Array:
  """Q_hat = c r + gamma (1 - done) V_target(s'), eq. 8-9; done is termination only."""
  chex.assert_equal_shape([reward, terminated, v_target_next])
  return reward_scale * reward + gamma * (1.0 - terminated) * v_target_next


def soft_value_target(q_pi: jax.Array, log_pi: jax.Array, alpha: jax.Array) -> jax.Array:
  """V_hat(s) = Q(s, a_pi) - alpha log pi(a_pi|s), a_pi ~ pi(.|s); eq. 3 and 7."""
  chex.assert_equal_shape([q_pi, log_pi])
  return q_pi - alpha * log_pi


def value_loss(v_params: Params, v_apply: Callable[..., jax.Array], obs: jax.Array,
               q_pi: jax.Array, log_pi: jax.Array, alpha: jax.Array
               ) -> tuple[jax.Array, Metrics]:
  """J_V = mean 1/2 (V(s) - sg[Q(s, a_pi) - alpha log pi(a_pi|s)])^2, eq. 7.

  q_pi is the (minimum over heads of the) Q of a fresh policy sample; no gradient flows
  into it nor into log_pi.
  """
  v = v_apply(v_params, obs)
  target = sg(soft_value_target(q_pi, log_pi, alpha))
  chex.assert_equal_shape([v, target])
  loss = 0.5 * jnp.mean(jnp.square(v - target))
  return loss, {"v_loss": loss, "v": jnp.mean(v), "v_target": jnp.mean(target)}


def q_loss(q_params: Params, q_apply: Callable[..., jax.Array], obs: jax.Array,
           action: jax.Array, reward: jax.Array, terminated: jax.Array,
           v_target_next: jax.Array, reward_scale: jax.Array, gamma: jax.Array
           ) -> tuple[jax.Array, Metrics]:
  """J_Q = mean 1/2 (Q(s, a) - sg[c r + gamma (1 - done) V_target(s')])^2, eq. 9.

  With several Q heads each head regresses on the same target; their losses are summed
  (each head's gradient equals its single-Q gradient).
  """
  q = q_apply(q_params, obs, action)  # [num_q, B]
  target = sg(soft_q_target(reward, terminated, v_target_next, reward_scale, gamma))
  chex.assert_rank(q, 2)
  chex.assert_equal_shape([q[0], target])
  loss = jnp.sum(0.5 * jnp.mean(jnp.square(q - target[None]), axis=-1))
  return loss, {"q_loss": loss, "q": jnp.mean(q), "q_target": jnp.mean(target)}


def policy_regularizer(means: jax.Array, log_stds: jax.Array, reg: jax.Array) -> jax.Array:
  """The authors' GMM regularizer: reg * 1/2 * (mean mu^2 + mean log_std^2)."""
  return reg * 0.5 * (jnp.mean(jnp.square(means)) + jnp.mean(jnp.square(log_stds)))


def policy_statistics(log_stds: jax.Array, u: jax.Array) -> Metrics:
  """Where the policy's mass lies, for diagnosis (no gradient flows from these).

  abs_u: the mean |u| of the pre-tanh samples u [..., d]. Past |u| of about 3 the action
  tanh(u) is within 0.5% of its bound, and the exact squash term -log(1 - tanh(u)^2) grows
  as 2|u| - 2 log 2 per dimension: a mean far above 3 says the policy sits in the tails.
  log_std: the mean of the log stds [..., K, d] over states, components and dimensions.
  """
  return {"abs_u": jnp.mean(jnp.abs(u)), "log_std": jnp.mean(log_stds)}


def likelihood_ratio_policy_loss(
    policy_params: Params, policy_apply: Callable[..., Any],
    obs: jax.Array, u: jax.Array, q_pi: jax.Array, v: jax.Array, alpha: jax.Array,
    reg: jax.Array, squash: str = "exact") -> tuple[jax.Array, Metrics]:
  """J_pi = mean log pi(sg[a]|s) sg[alpha log pi(a|s) - Q(s, a) + V(s)] + regularizer.

  Eq. 12-13 with the baseline b(s) = V(s) - log Z(s) - 1, which gives the bracket
  (alpha log pi - Q + V). The pre-squash sample u ~ p(.|s) is held fixed: this is the
  score-function (likelihood-ratio) estimator, not a reparameterized one. Its gradient in
  expectation is the gradient of E_{a~pi}[alpha log pi(a|s) - Q(s, a)].
  """
  out = policy_apply(policy_params, obs)
  u = sg(u)
  log_pi = gmm.squashed_log_prob(out.logits, out.means, out.log_stds, u, squash)
  chex.assert_equal_shape([log_pi, q_pi, v])
  advantage = sg(alpha * log_pi - q_pi + v)
  surrogate = jnp.mean(log_pi * advantage)
  reg_loss = policy_regularizer(out.means, out.log_stds, reg)
  loss = surrogate + reg_loss
  return loss, {"policy_loss": loss, "policy_reg": reg_loss, "log_pi": jnp.mean(log_pi),
                "entropy": -jnp.mean(log_pi)}


def reparameterized_policy_loss(
    policy_params: Params, policy_apply: Callable[..., Any],
    q_fn: Callable[[jax.Array, jax.Array], jax.Array], obs: jax.Array, eps: jax.Array,
    alpha: jax.Array, reg: jax.Array, squash: str = "exact") -> tuple[jax.Array, Metrics]:
  """J_pi = mean alpha log pi(f(eps, s)|s) - Q(s, f(eps, s)) + regularizer (K = 1 only).

  f(eps, s) = tanh(mu(s) + exp(log_std(s)) eps), eps ~ N(0, I) given. q_fn(obs, action)
  returns [B] (the minimum over Q heads) and is not differentiated with respect to its
  own params here.
  """
  out = policy_apply(policy_params, obs)
  if out.logits.shape[-1] != 1:
    raise ValueError("the reparameterized policy gradient needs num_components = 1, got "
                     f"{out.logits.shape[-1]}")
  u = gmm.reparameterize(out.means[..., 0, :], out.log_stds[..., 0, :], eps)
  log_pi = gmm.squashed_log_prob(out.logits, out.means, out.log_stds, u, squash)
  q = q_fn(obs, jnp.tanh(u))
  chex.assert_equal_shape([log_pi, q])
  reg_loss = policy_regularizer(out.means, out.log_stds, reg)
  loss = jnp.mean(alpha * log_pi - q) + reg_loss
  return loss, {"policy_loss": loss, "policy_reg": reg_loss, "log_pi": jnp.mean(log_pi),
                "entropy": -jnp.mean(log_pi)}


def mixture_reparameterized_policy_loss(
    policy_params: Params, policy_apply: Callable[..., Any],
    q_fn: Callable[[jax.Array, jax.Array], jax.Array], obs: jax.Array, eps: jax.Array,
    alpha: jax.Array, reg: jax.Array, squash: str = "exact") -> tuple[jax.Array, Metrics]:
  """Marginalized reparameterized ("MRP") loss for the Gaussian mixture, any K >= 1.

  He, Neumann, Mei, White and White, "Revisiting Mixture Policies in Entropy-Regularized
  Actor-Critic" (arXiv 2605.09157, 2026): the discrete component is summed out exactly and
  each component is reparameterized. Per state s, with w = softmax(logits(s)) and one
  eps_k ~ N(0, I) per component (eps has shape [B, K, d]):

      a_k = tanh(u_k),  u_k = mu_k(s) + exp(log_std_k(s)) * eps_k
      J_pi = mean_s sum_k w_k [alpha log pi(a_k|s) - Q(s, a_k)] + regularizer

  Since E_{a~pi}[h(a)] = sum_k w_k E_eps[h(a_k)], J_pi is an unbiased estimate of
  E_{a~pi}[alpha log pi(a|s) - Q(s, a)], the objective the likelihood-ratio loss follows.
  log pi is the full mixture density (gmm.squashed_log_prob) at each a_k. Its gradient has
  three parts, with h_k = alpha log pi(a_k|s) - Q(s, a_k):

      sum_k (grad w_k) h_k                                 weights, exact (no sampling of k)
    + sum_k w_k (dh/da)(a_k) (grad a_k)                    pathwise, through each a_k
    + alpha sum_k w_k (grad log pi_theta)(a)|_{a = a_k}    direct (score) term, mean zero

  Form used: full dependence, i.e. plain autodiff of J_pi, direct term included. Both that
  and the form with the direct term stopped are unbiased (the direct term's expectation is
  alpha E_{a~pi}[grad log pi(a|s)] = 0). The full form is chosen because with K = 1 it is
  exactly `reparameterized_policy_loss` (value and gradient), which differentiates log pi
  fully as SAC (2018b) and its common implementations do, so the two options agree where
  both apply. (On the 1-D toy of tests/test_mrp.py the two forms have about the same
  variance: the stopped one 4% lower in total, not in every entry; it is not offered.)
  Only the paper's abstract could be read when this was written ("marginalized
  reparameterization", provably lower variance than likelihood ratio), not its estimator
  section: this follows docs/algorithm.md and may differ from the paper in that choice.

  q_fn(obs, action) returns [N] for obs [N, ...] and actions [N, d] (the minimum over Q
  heads); it is called once on all B * K (state, a_k) pairs and not differentiated with
  respect to its own params here. Costs K Q evaluations per state (likelihood ratio: one).
  Metrics: log_pi and entropy are the weighted sum_k w_k log pi(a_k|s) (a stratified
  estimate of -entropy), averaged over states. In Agent.gradient_step the V target and
  the temperature loss still use one sampled action per state, as with the other losses.
  """
  out = policy_apply(policy_params, obs)
  chex.assert_rank(eps, 3)
  chex.assert_equal_shape([out.means, eps])  # [B, K, d]
  b, k, d = eps.shape
  u = gmm.reparameterize(out.means, out.log_stds, eps)                     # [B, K, d]
  # log pi(a_k|s) under the whole mixture: the K samples against the K components.
  log_pi = gmm.squashed_log_prob(out.logits[:, None, :], out.means[:, None],
                                 out.log_stds[:, None], u, squash)          # [B, K]
  obs_k = jnp.broadcast_to(obs[:, None], (b, k) + obs.shape[1:])
  q = q_fn(obs_k.reshape((b * k,) + obs.shape[1:]), jnp.tanh(u).reshape(b * k, d))
  q = q.reshape(b, k)
  weights = jax.nn.softmax(out.logits, axis=-1)                             # [B, K]
  chex.assert_equal_shape([log_pi, q, weights])
  reg_loss = policy_regularizer(out.means, out.log_stds, reg)
  loss = jnp.mean(jnp.sum(weights * (alpha * log_pi - q), axis=-1)) + reg_loss
  mean_log_pi = jnp.mean(jnp.sum(sg(weights) * log_pi, axis=-1))
  return loss, {"policy_loss": loss, "policy_reg": reg_loss, "log_pi": mean_log_pi,
                "entropy": -mean_log_pi}


def temperature_loss(log_alpha: jax.Array, log_pi: jax.Array, target_entropy: jax.Array
                     ) -> tuple[jax.Array, Metrics]:
  """J(alpha) = mean -log_alpha (log pi(a|s) + target_entropy), SAC (2018b) eq. 18.

  Parameterized by log alpha; raises alpha when the entropy -log pi is below the target.
  """
  loss = -jnp.mean(log_alpha * sg(log_pi + target_entropy))
  return loss, {"alpha_loss": loss, "alpha": jnp.exp(log_alpha)}
