"""A uniform replay ring buffer that lives on the device as a pytree.

Pure `init`, `add` and `sample`; under `jax.vmap` every array gains a leading member axis
and each member keeps its own buffer, pointer and size.

Memory: one stored transition costs 4 * (2 * obs_dim + act_dim + 2) bytes (float32
observation, action, reward, next observation, termination flag). HalfCheetah
(obs 17, act 6) takes 168 bytes, so the paper's capacity of 1e6 is 168 MB per member.
The capacity is `SACConfig.buffer_size`, fixed at `init` (arrays are preallocated);
`resize` moves a buffer into another capacity (a branch with another --buffer_size).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp


class Transition(NamedTuple):
  obs: jax.Array         # [..., obs_dim]
  action: jax.Array      # [..., act_dim], in [-1, 1]
  reward: jax.Array      # [...]
  next_obs: jax.Array    # [..., obs_dim], the true final observation at a truncation
  terminated: jax.Array  # [...], 1.0 at a true termination, 0.0 otherwise (truncation too)


class ReplayState(NamedTuple):
  data: Transition  # each field [capacity, ...]
  insert_pos: jax.Array  # shape=(), int32: next slot to write
  size: jax.Array        # shape=(), int32: filled slots, at most capacity


def transition_bytes(obs_dim: int, act_dim: int) -> int:
  """Bytes per stored transition."""
  return 4 * (2 * obs_dim + act_dim + 2)


def init(capacity: int, obs_dim: int, act_dim: int) -> ReplayState:
  if capacity < 1:
    raise ValueError(f"replay capacity must be >= 1, got {capacity}")
  z = lambda *shape: jnp.zeros((capacity,) + shape, jnp.float32)
  data = Transition(obs=z(obs_dim), action=z(act_dim), reward=z(), next_obs=z(obs_dim),
                    terminated=z())
  return ReplayState(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def capacity(state: ReplayState) -> int:
  return state.data.reward.shape[-1]


def add(state: ReplayState, transition: Transition, mask: jax.Array | bool = True
        ) -> ReplayState:
  """Writes one transition at the insert position (overwriting the oldest when full).

  `mask` False leaves the buffer untouched (used for the first call of an episode-less
  step, where there is no transition yet); it may be traced.
  """
  cap = capacity(state)
  chex.assert_rank(transition.reward, 0)
  mask = jnp.asarray(mask)
  pos = state.insert_pos

  def write(buf, x):
    # Select on the one row only: a select over the whole buffer would copy it every step.
    row = jnp.where(mask, x.astype(buf.dtype), jax.lax.dynamic_index_in_dim(
        buf, pos, axis=0, keepdims=False))
    return jax.lax.dynamic_update_index_in_dim(buf, row, pos, axis=0)

  data = jax.tree.map(write, state.data, transition)
  step = mask.astype(jnp.int32)
  return ReplayState(data, (pos + step) % cap, jnp.minimum(state.size + step, cap))


def sample(state: ReplayState, key: chex.PRNGKey, batch_size: int) -> Transition:
  """A uniform minibatch (with replacement) from the filled slots only.

  The caller makes sure size > 0; with size 0 the indices clamp to slot 0.
  """
  idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
  return jax.tree.map(lambda buf: jnp.take(buf, idx, axis=0), state.data)


def resize(state: ReplayState, new_capacity: int) -> ReplayState:
  """One member's buffer moved into `new_capacity` slots: its newest min(size,
  new_capacity) transitions, oldest first from slot 0, the rest empty; the insert position
  after them, so that adding goes on as in a buffer of that capacity holding them (when
  full, the oldest is overwritten first). Larger or smaller, wrapped or not."""
  old = capacity(state)
  n = jnp.minimum(state.size, new_capacity).astype(jnp.int32)
  slot = jnp.arange(new_capacity, dtype=jnp.int32)
  # The newest transition sits at insert_pos - 1, the n-th newest at insert_pos - n.
  src = (state.insert_pos - n + slot) % old
  filled = slot < n

  def move(buf):
    rows = jnp.take(buf, src, axis=0)
    return jnp.where(filled.reshape((-1,) + (1,) * (buf.ndim - 1)), rows, 0).astype(buf.dtype)

  return ReplayState(jax.tree.map(move, state.data), n % new_capacity, n)


def fit(restored: ReplayState, like: ReplayState) -> ReplayState:
  """Stacked buffers ([M, capacity, ...]) `restored` in `like`'s capacity and placement
  (`resize` per member, jitted: works on arrays spread over devices and processes);
  `restored` itself when the capacities agree."""
  new = capacity(like)
  if capacity(restored) == new:
    return restored
  shardings = jax.tree.map(lambda x: x.sharding, like)
  return jax.jit(_resize_stacked, static_argnums=1, out_shardings=shardings)(restored, new)


def _resize_stacked(state: ReplayState, new_capacity: int) -> ReplayState:
  return jax.vmap(resize, in_axes=(0, None))(state, new_capacity)
