"""flax.linen modules: MLP torso, Gaussian-mixture policy head, Q (optionally an ensemble), V.

Params are plain pytrees, so they vmap over members and checkpoint as they are.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sac_jax import settings

# Bounds of the policy's log standard deviations, applied smoothly (`soft_clip`).
# The authors' code hard-clipped to [-20, 2]. Two defects made us change that: a hard clip
# has zero gradient outside the range, so a component pushed past a bound is stuck there
# (not even the regularizer pulls it back); and below about -12 float32 cannot represent
# u - mu = sigma * eps next to a mean of order 1 (ulp(1) = 1.2e-7), so the likelihood-ratio
# score (u - mu) / sigma^2 is wrong by percents at -12 and by 100% at -16 to -20
# (tests/test_networks.py measures it). At -5 the error is below 3e-5 for |mu| <= 5, and an
# action std of e^-5 = 0.007 (before tanh) is as deterministic as MuJoCo tasks need.
LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0


def soft_clip(x: jax.Array, low: float, high: float) -> jax.Array:
  """A smooth clip into (low, high): low + softplus(x - low) - softplus(x - high).

  Close to the identity well inside the range, strictly bounded, monotone, and its
  gradient sigmoid(x - low) - sigmoid(x - high) is never exactly zero (a hard clip's is 0
  outside the range). Above the midpoint the same value is computed as
  high + softplus(low - x) - softplus(high - x), which avoids cancellation for large x.
  """
  below = low + jax.nn.softplus(x - low) - jax.nn.softplus(x - high)
  above = high + jax.nn.softplus(low - x) - jax.nn.softplus(high - x)
  return jnp.where(x < 0.5 * (low + high), below, above)


# How the networks see an observation (the `obs_transform` setting): as it comes, or
# symlog(x) = sign(x) log(1 + |x|) per entry (Hafner et al., DreamerV3), which leaves
# entries near 0 about as they are and maps 3,000 to 8. The replay keeps the raw
# observation; every network applies the transform to its input, so acting, the updates
# and the evaluation see the same thing, and nothing about it needs checkpointing.
OBS_TRANSFORMS = ("none", "symlog")


def check_obs_transform(name: str) -> None:
  """Pure Python (touching no device: it runs before jax.distributed.initialize)."""
  if name not in OBS_TRANSFORMS:
    raise ValueError(f"obs_transform={name!r}: must be one of {list(OBS_TRANSFORMS)}")


def transform_obs(obs: jax.Array, name: str) -> jax.Array:
  check_obs_transform(name)
  return obs if name == "none" else jnp.sign(obs) * jnp.log1p(jnp.abs(obs))


# The names are the `activation` setting's (sac_jax.settings, which validates them).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    name: getattr(nn, name) for name in settings.ACTIVATIONS}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  settings.validate({"activation": name})
  return ACTIVATIONS[name]


class MLP(nn.Module):
  """Hidden layers with an activation after each; no output layer."""
  hidden_sizes: Sequence[int]
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = get_activation(self.activation)
    for size in self.hidden_sizes:
      x = act(nn.Dense(size)(x))
    return x


class GMMOutput(NamedTuple):
  logits: jax.Array    # [..., K]
  means: jax.Array     # [..., K, d]
  log_stds: jax.Array  # [..., K, d], soft-clipped into (log_std_min, log_std_max)


class GMMPolicy(nn.Module):
  """Paper eq. 14: per state, K mixture logits, K x d means and K x d log-stds."""
  action_dim: int
  num_components: int = 4
  hidden_sizes: Sequence[int] = (128, 128)
  activation: str = "relu"
  log_std_min: float = LOG_STD_MIN
  log_std_max: float = LOG_STD_MAX
  obs_transform: str = "none"

  @nn.compact
  def __call__(self, obs: jax.Array) -> GMMOutput:
    k, d = self.num_components, self.action_dim
    h = MLP(self.hidden_sizes, self.activation)(transform_obs(obs, self.obs_transform))
    out = nn.Dense(k * (1 + 2 * d))(h)
    logits = out[..., :k]
    means = out[..., k:k + k * d].reshape(out.shape[:-1] + (k, d))
    log_stds = out[..., k + k * d:].reshape(out.shape[:-1] + (k, d))
    log_stds = soft_clip(log_stds, self.log_std_min, self.log_std_max)
    return GMMOutput(logits, means, log_stds)


def _final_dense(features: int, init_scale: float | None) -> nn.Dense:
  """The output layer: flax's default init, or weights and biases ~ U(-s, s) (DDPG)."""
  if init_scale is None:
    return nn.Dense(features)
  init = nn.initializers.uniform(scale=2.0 * init_scale)  # U[0, 2s), shifted below
  shifted = lambda key, shape, dtype=jnp.float32: init(key, shape, dtype) - init_scale
  return nn.Dense(features, kernel_init=shifted, bias_init=shifted)


class _QHead(nn.Module):
  hidden_sizes: Sequence[int]
  activation: str
  final_init_scale: float | None = None
  obs_transform: str = "none"

  @nn.compact
  def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
    x = jnp.concatenate([transform_obs(obs, self.obs_transform), action], axis=-1)
    h = MLP(self.hidden_sizes, self.activation)(x)
    return _final_dense(1, self.final_init_scale)(h)[..., 0]


class QNetwork(nn.Module):
  """Soft Q(s, a) as an ensemble of `num_q` independent heads: returns [num_q, ...].

  num_q = 1 is the paper; num_q = 2 is the twin Q of SAC (2018), used with the minimum.
  """
  hidden_sizes: Sequence[int] = (128, 128)
  activation: str = "relu"
  num_q: int = 1
  final_init_scale: float | None = None  # None: flax's default init of the output layer
  obs_transform: str = "none"

  @nn.compact
  def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
    ensemble = nn.vmap(
        _QHead, variable_axes={"params": 0}, split_rngs={"params": True},
        in_axes=None, out_axes=0, axis_size=self.num_q)
    return ensemble(self.hidden_sizes, self.activation, self.final_init_scale,
                    self.obs_transform)(obs, action)


class DeterministicPolicy(nn.Module):
  """DDPG's actor: a = tanh(f(s)) in [-1, 1]^d, the output layer initialized U(-s, s)."""
  action_dim: int
  hidden_sizes: Sequence[int] = (400, 300)
  activation: str = "relu"
  final_init_scale: float | None = 3e-3
  obs_transform: str = "none"

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    h = MLP(self.hidden_sizes, self.activation)(transform_obs(obs, self.obs_transform))
    return jnp.tanh(_final_dense(self.action_dim, self.final_init_scale)(h))


class VNetwork(nn.Module):
  """Soft state value V(s): returns [...]."""
  hidden_sizes: Sequence[int] = (128, 128)
  activation: str = "relu"
  obs_transform: str = "none"

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    h = MLP(self.hidden_sizes, self.activation)(transform_obs(obs, self.obs_transform))
    return nn.Dense(1)(h)[..., 0]


class SACNetworks(NamedTuple):
  """The three modules as one bundle; `.apply` of each is what the losses call."""
  policy: GMMPolicy
  q: QNetwork
  v: VNetwork


def make_networks(action_dim: int, num_components: int = 4,
                  hidden_sizes: Sequence[int] = (128, 128), activation: str = "relu",
                  num_q: int = 1, log_std_min: float = LOG_STD_MIN,
                  log_std_max: float = LOG_STD_MAX, obs_transform: str = "none"
                  ) -> SACNetworks:
  hidden_sizes = tuple(int(h) for h in hidden_sizes)
  check_obs_transform(obs_transform)  # a bad name fails here, before any init
  return SACNetworks(
      policy=GMMPolicy(action_dim, num_components, hidden_sizes, activation,
                       log_std_min, log_std_max, obs_transform),
      q=QNetwork(hidden_sizes, activation, num_q, obs_transform=obs_transform),
      v=VNetwork(hidden_sizes, activation, obs_transform))
