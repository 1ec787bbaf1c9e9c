"""Gaussian-mixture policy math with a tanh squash (SAC paper, eq. 14 and appendix C).

Pure functions of arrays; no flax. Conventions (the public contract, docs/algorithm.md):

    logits    [..., K]      mixture logits w
    means     [..., K, d]   component means mu
    log_stds  [..., K, d]   component log standard deviations (already clipped)
    u         [..., d]      pre-squash sample; the action is a = tanh(u)

Batch dimensions broadcast against each other. float32 in, float32 out.

    log p(u|s)  = logsumexp_k [ log_softmax(w)_k + sum_j log N(u_j; mu_kj, exp(log_std_kj)) ]
    log pi(a|s) = log p(u|s) - sum_j log(1 - tanh(u_j)^2)
    log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u))      (stable for any |u|)

`squash="capped"` computes the squash term as the authors' first release did,
log(1 - tanh(u)^2 + 1e-6): at most 13.8 nats per dimension, flat in the tanh's tails.
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
# "exact": the paper's appendix C; "capped": the first release's log(1 - tanh^2 + eps).
SQUASH_CORRECTIONS = ("exact", "capped")
CAPPED_SQUASH_EPS = 1e-6


def _check(logits: jax.Array, means: jax.Array, log_stds: jax.Array) -> None:
  # Batch dimensions broadcast (means and log_stds may differ in rank); the trailing
  # [K, d] must agree, and K must match the logits.
  chex.assert_axis_dimension(means, -2, logits.shape[-1])
  chex.assert_equal_shape_suffix([means, log_stds], 2)


def component_log_probs(logits: jax.Array, means: jax.Array, log_stds: jax.Array,
                        u: jax.Array) -> jax.Array:
  """log softmax(w)_k + log N(u; mu_k, diag(exp(log_std_k))^2), shape [..., K]."""
  _check(logits, means, log_stds)
  z = (u[..., None, :] - means) * jnp.exp(-log_stds)
  log_normal = jnp.sum(-0.5 * jnp.square(z) - log_stds - _HALF_LOG_2PI, axis=-1)
  return jax.nn.log_softmax(logits, axis=-1) + log_normal


def log_prob(logits: jax.Array, means: jax.Array, log_stds: jax.Array,
             u: jax.Array) -> jax.Array:
  """log p(u|s) of the Gaussian mixture (paper eq. 14), shape [...]."""
  return jax.nn.logsumexp(component_log_probs(logits, means, log_stds, u), axis=-1)


def tanh_log_det_jacobian(u: jax.Array, squash: str = "exact") -> jax.Array:
  """sum_j log(1 - tanh(u_j)^2), computed stably; shape [...].

  squash="capped": sum_j log(1 - tanh(u_j)^2 + 1e-6), the authors' first release, computed
  as logaddexp(log(1 - tanh^2), log 1e-6): the same number, without float32's cancellation
  in 1 - tanh^2 (and XLA may regroup (1 - t^2) + 1e-6 as (1 + 1e-6) - t^2, which caps at
  log 2^-20 instead)."""
  log1m_tanh2 = 2.0 * (_LOG_2 - u - jax.nn.softplus(-2.0 * u))
  if squash == "exact":
    return jnp.sum(log1m_tanh2, axis=-1)
  if squash == "capped":
    return jnp.sum(jnp.logaddexp(log1m_tanh2, math.log(CAPPED_SQUASH_EPS)), axis=-1)
  raise ValueError(f"squash={squash!r}: must be one of {list(SQUASH_CORRECTIONS)}")


def squashed_log_prob(logits: jax.Array, means: jax.Array, log_stds: jax.Array,
                      u: jax.Array, squash: str = "exact") -> jax.Array:
  """log pi(tanh(u)|s): the mixture density of u with the tanh change of variables
  (`squash`: its term exact, or capped as in the first release)."""
  return log_prob(logits, means, log_stds, u) - tanh_log_det_jacobian(u, squash)


def reparameterize(means: jax.Array, log_stds: jax.Array, eps: jax.Array) -> jax.Array:
  """u = mu + exp(log_std) * eps: the pre-squash sample as a differentiable function of the
  means and log-stds for given standard normal noise eps (same shapes, broadcasting)."""
  return means + jnp.exp(log_stds) * eps


def sample(key: chex.PRNGKey, logits: jax.Array, means: jax.Array,
           log_stds: jax.Array) -> jax.Array:
  """u ~ p(.|s): k ~ Categorical(softmax(w)), u = mu_k + exp(log_std_k) * eps.

  Returns the pre-squash sample u, shape [broadcast batch..., d].
  """
  _check(logits, means, log_stds)
  batch = jnp.broadcast_shapes(logits.shape[:-1], means.shape[:-2], log_stds.shape[:-2])
  k_key, eps_key = jax.random.split(key)
  d = means.shape[-1]
  num_k = logits.shape[-1]
  k = jax.random.categorical(k_key, jnp.broadcast_to(logits, batch + (num_k,)), axis=-1)
  means = jnp.broadcast_to(means, batch + (num_k, d))
  log_stds = jnp.broadcast_to(log_stds, batch + (num_k, d))
  mu_k = jnp.take_along_axis(means, k[..., None, None], axis=-2)[..., 0, :]
  log_std_k = jnp.take_along_axis(log_stds, k[..., None, None], axis=-2)[..., 0, :]
  eps = jax.random.normal(eps_key, batch + (d,), dtype=means.dtype)
  return reparameterize(mu_k, log_std_k, eps)


def component_modes(means: jax.Array) -> jax.Array:
  """The K candidate deterministic actions tanh(mu_k), shape [..., K, d]."""
  return jnp.tanh(means)


def select_component(modes: jax.Array, scores: jax.Array) -> jax.Array:
  """The candidate with the highest score: modes [..., K, d], scores [..., K] -> [..., d].

  With scores = Q(s, tanh(mu_k)) this is the paper's evaluation action (section 5).
  """
  chex.assert_equal_shape_prefix([modes, scores], scores.ndim)
  best = jnp.argmax(scores, axis=-1)
  return jnp.take_along_axis(modes, best[..., None, None], axis=-2)[..., 0, :]
