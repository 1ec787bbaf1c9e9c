"""The on-device ring buffer: wrap-around, uniform sampling of filled slots, masks, vmap."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sac_jax import replay


def _transition(i, obs_dim=3, act_dim=2):
  i = jnp.asarray(i, jnp.float32)
  return replay.Transition(obs=jnp.full((obs_dim,), i), action=jnp.full((act_dim,), -i),
                           reward=i, next_obs=jnp.full((obs_dim,), i + 0.5),
                           terminated=i % 2)


@pytest.mark.parametrize("jit", [False, True])
def test_wraps_around_and_overwrites_oldest(jit):
  """Capacity 5, 7 insertions: slots hold 5, 6, 2, 3, 4; pointer 2; size stays 5."""
  add = jax.jit(replay.add) if jit else replay.add
  state = replay.init(5, 3, 2)
  sizes = []
  for i in range(7):
    state = add(state, _transition(i))
    sizes.append(int(state.size))
  assert sizes == [1, 2, 3, 4, 5, 5, 5]
  assert int(state.insert_pos) == 2
  np.testing.assert_array_equal(np.asarray(state.data.reward), [5, 6, 2, 3, 4])
  np.testing.assert_array_equal(np.asarray(state.data.obs[:, 0]), [5, 6, 2, 3, 4])
  np.testing.assert_array_equal(np.asarray(state.data.next_obs[:, 1]), [5.5, 6.5, 2.5, 3.5, 4.5])
  np.testing.assert_array_equal(np.asarray(state.data.action[:, 1]), [-5, -6, -2, -3, -4])
  np.testing.assert_array_equal(np.asarray(state.data.terminated), [1, 0, 0, 1, 0])


def test_masked_add_changes_nothing():
  state = replay.add(replay.init(4, 3, 2), _transition(7))
  after = replay.add(state, _transition(9), mask=False)
  chex.assert_trees_all_equal(state, after)


def test_samples_only_filled_slots_uniformly():
  """10 of 100 slots filled: every sample is one of them, each drawn ~1/10 of the time."""
  state = replay.init(100, 3, 2)
  for i in range(1, 11):
    state = replay.add(state, _transition(i))
  batch = jax.jit(replay.sample, static_argnums=2)(state, jax.random.PRNGKey(0), 20_000)
  chex.assert_shape(batch.obs, (20_000, 3))
  r = np.asarray(batch.reward)
  assert set(np.unique(r)) == set(range(1, 11))
  counts = np.bincount(r.astype(int), minlength=11)[1:]
  # Binomial(20000, 0.1): sd = 42.4; 5 sd either side.
  assert np.all(np.abs(counts - 2000) < 5 * 42.4), counts
  # Fields of one sample come from the same slot.
  np.testing.assert_array_equal(np.asarray(batch.obs[:, 0]), r)
  np.testing.assert_array_equal(np.asarray(batch.next_obs[:, 2]), r + 0.5)


def test_vmapped_members_keep_their_own_buffers():
  """Under vmap each member writes its own transition and keeps its own pointer."""
  m = 3
  state = jax.vmap(lambda _: replay.init(4, 3, 2))(jnp.arange(m))
  add = jax.jit(jax.vmap(replay.add, in_axes=(0, 0, None)))
  for step in range(6):
    tr = jax.vmap(_transition)(jnp.arange(m) * 100 + step)
    state = add(state, tr, True)
  chex.assert_shape(state.data.obs, (m, 4, 3))
  np.testing.assert_array_equal(np.asarray(state.size), [4, 4, 4])
  for i in range(m):
    np.testing.assert_array_equal(np.asarray(state.data.reward[i]),
                                  i * 100 + np.array([4, 5, 2, 3]))


def test_transition_bytes_matches_arrays():
  state = replay.init(10, 17, 6)
  nbytes = sum(x.nbytes for x in jax.tree.leaves(state.data))
  assert nbytes == 10 * replay.transition_bytes(17, 6) == 10 * 168


def _fifo_readout(state):
  """The stored rewards oldest first (a full buffer's oldest is at its insert position)."""
  r, pos, size = (np.asarray(state.data.reward), int(state.insert_pos), int(state.size))
  cap = r.shape[0]
  start = pos if size == cap else 0
  assert size == cap or pos == size  # unwrapped buffers fill from slot 0
  return [float(r[(start + k) % cap]) for k in range(size)]


@pytest.mark.parametrize("old, fed, new", [
    (5, 3, 8),    # not full, grown
    (5, 3, 2),    # not full, shrunk below its size
    (5, 7, 3),    # wrapped, shrunk
    (5, 7, 9),    # wrapped, grown
    (5, 5, 5),    # full, same capacity (pos 0)
    (6, 13, 4),   # wrapped more than once
    (4, 0, 3),    # empty
])
def test_resize_keeps_the_newest_and_goes_on_as_a_buffer_of_that_capacity(old, fed, new):
  """Against collections.deque(maxlen): after resizing, the buffer holds the newest
  min(held, new) of the transitions the old one held, oldest first, and further adds keep
  matching a deque of the new capacity (the oldest overwritten first)."""
  import collections
  state = replay.init(old, 3, 2)
  for i in range(1, fed + 1):
    state = replay.add(state, _transition(i))
  out = jax.jit(replay.resize, static_argnums=1)(state, new)
  chex.assert_shape(out.data.obs, (new, 3))
  held = list(range(1, fed + 1))[-old:]  # what the old buffer still holds
  ref = collections.deque(held, maxlen=new)
  assert _fifo_readout(out) == [float(x) for x in ref]
  assert int(out.size) == len(ref) and int(out.insert_pos) == len(ref) % new
  filled = int(out.size)
  # Every field moved together, and the empty slots are zeros.
  np.testing.assert_array_equal(np.asarray(out.data.next_obs[:filled, 2]),
                                np.asarray(out.data.reward[:filled]) + 0.5)
  np.testing.assert_array_equal(np.asarray(out.data.action[:filled, 0]),
                                -np.asarray(out.data.reward[:filled]))
  assert not np.asarray(out.data.obs[filled:]).any()
  for i in range(fed + 1, fed + 2 * new + 2):
    out = replay.add(out, _transition(i))
    ref.append(i)
    assert _fifo_readout(out) == [float(x) for x in ref], i


def test_fit_resizes_each_member_and_keeps_equal_capacities_as_they_are():
  m = 2
  state = jax.vmap(lambda _: replay.init(4, 3, 2))(jnp.arange(m))
  add = jax.jit(jax.vmap(replay.add, in_axes=(0, 0, 0)))
  for step in range(6):  # member 0 adds every step, member 1 every other step
    tr = jax.vmap(_transition)(jnp.arange(m) * 100 + step)
    state = add(state, tr, jnp.array([True, step % 2 == 0]))
  like = jax.vmap(lambda _: replay.init(3, 3, 2))(jnp.arange(m))
  out = replay.fit(state, like)
  chex.assert_shape(out.data.reward, (m, 3))
  np.testing.assert_array_equal(np.asarray(out.data.reward), [[3, 4, 5], [100, 102, 104]])
  np.testing.assert_array_equal(np.asarray(out.size), [3, 3])
  np.testing.assert_array_equal(np.asarray(out.insert_pos), [0, 0])
  assert replay.fit(state, state) is state
