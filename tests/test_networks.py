"""Tests of sac_jax.networks: shapes, clipping, ensembles, and numpy forward passes.

Forward passes are compared with a float64 numpy re-implementation that reads the flax params
pytree; tolerance atol=1e-5, rtol=1e-5 (float32 matmuls of width <= 16 with O(1) values).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sac_jax import networks

TOL = dict(atol=1e-5, rtol=1e-5)

NP_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0.0, x, np.expm1(np.minimum(x, 0.0))),
    "swish": lambda x: x / (1.0 + np.exp(-x)),
}


def f64(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def np_dense(p, x):
  return x @ p["kernel"] + p["bias"]


def np_soft_clip(x, low, high):
  """float64 reference of networks.soft_clip: low + softplus(x - low) - softplus(x - high),
  softplus(z) = logaddexp(0, z) (float64 keeps the difference exact enough for |x| < 1e7)."""
  return low + np.logaddexp(0.0, x - low) - np.logaddexp(0.0, x - high)


def np_mlp(p, x, num_layers, act="relu"):
  """act(... act(act(x W1 + b1) W2 + b2) ...) from the MLP's params."""
  for i in range(num_layers):
    x = NP_ACTIVATIONS[act](np_dense(p[f"Dense_{i}"], x))
  return x


# ----------------------------------------------------------------------------------------------
# forward passes against numpy


@pytest.mark.parametrize("act", sorted(NP_ACTIVATIONS))
@pytest.mark.parametrize("hidden", [(8,), (8, 5), (16, 16, 4)])
def test_mlp_matches_numpy_forward(hidden, act):
  """MLP computes act(x W1 + b1) -> act(. W2 + b2) ... with the params pytree, no output layer."""
  mlp = networks.MLP(hidden, act)
  x = np.random.default_rng(0).normal(0, 2, (6, 3)).astype(np.float32)
  params = mlp.init(jax.random.PRNGKey(0), x)
  out = jax.jit(mlp.apply)(params, x)
  chex.assert_shape(out, (6, hidden[-1]))
  chex.assert_type(out, jnp.float32)
  expected = np_mlp(f64(params["params"]), x.astype(np.float64), len(hidden), act)
  chex.assert_trees_all_close(f64(out), expected, **TOL)


def test_value_network_matches_numpy_forward():
  """V(s) = Dense_1(relu MLP(s)), squeezed to [B]."""
  v = networks.VNetwork((16, 8))
  obs = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
  params = v.init(jax.random.PRNGKey(1), obs)
  p = f64(params["params"])
  expected = np_dense(p["Dense_0"], np_mlp(p["MLP_0"], obs.astype(np.float64), 2))[:, 0]
  chex.assert_trees_all_close(f64(jax.jit(v.apply)(params, obs)), expected, **TOL)


def test_q_network_matches_numpy_forward():
  """Each Q head is Dense_1(relu MLP([s, a])) with its own slice of the stacked params."""
  q = networks.QNetwork((16, 8), num_q=2)
  rng = np.random.default_rng(2)
  obs = rng.normal(size=(5, 4)).astype(np.float32)
  act = rng.uniform(-1, 1, (5, 2)).astype(np.float32)
  params = q.init(jax.random.PRNGKey(2), obs, act)
  out = jax.jit(q.apply)(params, obs, act)
  chex.assert_shape(out, (2, 5))
  (stacked,) = f64(params["params"]).values()
  x = np.concatenate([obs, act], -1).astype(np.float64)
  for h in range(2):
    p = jax.tree.map(lambda leaf: leaf[h], stacked)
    expected = np_dense(p["Dense_0"], np_mlp(p["MLP_0"], x, 2))[:, 0]
    chex.assert_trees_all_close(f64(out[h]), expected, **TOL)


@pytest.mark.parametrize("scale", [1.0, 1e6])
def test_policy_matches_numpy_forward_with_clipping(scale):
  """GMMPolicy: one Dense on the torso split as [logits | means (K, d) | log_stds (K, d)],
  log_stds soft-clipped into (LOG_STD_MIN, LOG_STD_MAX)."""
  k, d = 3, 2
  pol = networks.GMMPolicy(d, k, (16, 16))
  obs = np.random.default_rng(3).normal(0, 1, (7, 4)).astype(np.float32)
  params = pol.init(jax.random.PRNGKey(3), obs)
  obs = (obs * scale).astype(np.float32)
  out = jax.jit(pol.apply)(params, obs)
  p = f64(params["params"])
  raw = np_dense(p["Dense_0"], np_mlp(p["MLP_0"], obs.astype(np.float64), 2))
  expected = (raw[:, :k], raw[:, k:k + k * d].reshape(7, k, d),
              np_soft_clip(raw[:, k + k * d:].reshape(7, k, d), networks.LOG_STD_MIN,
                           networks.LOG_STD_MAX))
  # Relative tolerance for the huge pre-activations of scale = 1e6.
  chex.assert_trees_all_close(f64(tuple(out)), expected, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# shapes and contracts


@pytest.mark.parametrize("batch", [(), (3,), (2, 5)])
@pytest.mark.parametrize("k, d, hidden", [(1, 1, (8,)), (4, 3, (16, 8)), (2, 6, (32, 32)),
                                          (4, 17, (8, 8, 8))])
def test_policy_output_shapes(k, d, hidden, batch):
  """GMMPolicy returns logits [..., K], means and log_stds [..., K, d], float32."""
  pol = networks.GMMPolicy(d, k, hidden)
  obs = jnp.ones(batch + (5,))
  out = pol.apply(pol.init(jax.random.PRNGKey(0), obs), obs)
  assert isinstance(out, networks.GMMOutput)
  chex.assert_shape(out.logits, batch + (k,))
  chex.assert_shape([out.means, out.log_stds], batch + (k, d))
  chex.assert_type(tuple(out), jnp.float32)


def test_policy_log_stds_stay_in_range_for_huge_inputs():
  """log_stds lie in [LOG_STD_MIN, LOG_STD_MAX] for huge observations, both bounds reached
  (to float32 precision: the soft clip saturates there)."""
  pol = networks.GMMPolicy(6, 4, (32, 32))
  rng = np.random.default_rng(4)
  obs = rng.normal(0, 1, (64, 10)).astype(np.float32)
  params = pol.init(jax.random.PRNGKey(4), obs)
  out = jax.jit(pol.apply)(params, obs * 1e8)
  chex.assert_tree_all_finite(tuple(out))
  ls = np.asarray(out.log_stds)
  assert ls.min() >= networks.LOG_STD_MIN and ls.max() <= networks.LOG_STD_MAX
  # The raw outputs are far outside the range, so the clip is what keeps them in.
  assert np.any(ls < networks.LOG_STD_MIN + 1e-5)
  assert np.any(ls > networks.LOG_STD_MAX - 1e-5)


@pytest.mark.parametrize("low, high", [(networks.LOG_STD_MIN, networks.LOG_STD_MAX),
                                       (-20.0, 2.0)])
def test_soft_clip_matches_reference_and_keeps_a_gradient(low, high):
  """soft_clip against its float64 formula, inside (low, high) everywhere, close to the
  identity mid-range, and with a nonzero gradient beyond both bounds (a hard clip's is 0
  there, so a component pushed past a bound could never come back)."""
  x = np.linspace(low - 30.0, high + 30.0, 2001).astype(np.float32)
  y = jax.jit(networks.soft_clip, static_argnums=(1, 2))(x, low, high)
  # float32 softplus of values up to ~50: atol 1e-5, rtol 1e-6.
  chex.assert_trees_all_close(np.asarray(y, np.float64), np_soft_clip(x.astype(np.float64),
                                                                      low, high),
                              atol=1e-5, rtol=1e-6)
  assert np.all(np.asarray(y) >= low) and np.all(np.asarray(y) <= high)
  mid = 0.5 * (low + high)
  assert abs(float(networks.soft_clip(jnp.float32(mid), low, high)) - mid) < 0.1
  grad = jax.vmap(jax.grad(lambda z: networks.soft_clip(z, low, high)))(
      jnp.asarray([low - 5.0, low - 1.0, high + 1.0, high + 5.0], jnp.float32))
  assert np.all(np.asarray(grad) > 1e-3), grad
  # The regularizer's pull reaches a component 3 nats below the lower bound.
  g = jax.grad(lambda z: jnp.square(networks.soft_clip(z, low, high)))(jnp.float32(low - 3))
  assert float(g) < -1e-2, g  # d/dz of log_std^2 < 0: pushes z up, toward 0


@pytest.mark.parametrize("mu", [0.3, 1.0, 3.0])
def test_score_at_the_lower_log_std_bound_is_accurate_in_float32(mu):
  """At log_std = LOG_STD_MIN the float32 likelihood-ratio score d log N(u; mu, sigma)/d mu
  = (u - mu) / sigma^2 with u = mu + sigma eps (sampled in float32, as the step does) is
  within 1e-3 of the float64 value eps / sigma. At the authors' -20 it is wrong by ~100%:
  this is why LOG_STD_MIN is not -20."""
  eps = np.random.default_rng(5).standard_normal(4096)
  def score_error(log_std):
    s32 = np.exp(np.float32(log_std))
    u32 = np.float32(mu) + s32 * eps.astype(np.float32)
    grad = jax.vmap(jax.grad(lambda m, u: -0.5 * jnp.square((u - m) / s32)))(
        jnp.full(eps.shape, mu, jnp.float32), jnp.asarray(u32))
    exact = eps / np.exp(np.float64(log_std))
    return np.median(np.abs(np.asarray(grad, np.float64) - exact) / np.abs(exact))
  assert score_error(networks.LOG_STD_MIN) < 1e-3
  assert score_error(-20.0) > 0.5


@pytest.mark.parametrize("num_q", [1, 2])
@pytest.mark.parametrize("batch", [(7,), (2, 5)])
def test_q_network_shape(num_q, batch):
  """QNetwork returns [num_q, ...batch]."""
  q = networks.QNetwork((8, 8), num_q=num_q)
  obs, act = jnp.ones(batch + (4,)), jnp.ones(batch + (2,))
  out = q.apply(q.init(jax.random.PRNGKey(0), obs, act), obs, act)
  chex.assert_shape(out, (num_q,) + batch)
  chex.assert_type(out, jnp.float32)


def test_twin_q_heads_differ():
  """With num_q = 2 the heads get independently initialized kernels and different outputs."""
  q = networks.QNetwork((8, 8), num_q=2)
  rng = np.random.default_rng(5)
  obs = rng.normal(size=(6, 4)).astype(np.float32)
  act = rng.uniform(-1, 1, (6, 2)).astype(np.float32)
  params = q.init(jax.random.PRNGKey(5), obs, act)
  kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
             if "kernel" in jax.tree_util.keystr(path)]
  assert len(kernels) == 3  # two hidden layers and the output layer
  for leaf in jax.tree.leaves(params):
    assert leaf.shape[0] == 2  # stacked heads
  for leaf in kernels:
    assert np.all(np.asarray(leaf[0]) != np.asarray(leaf[1]))
  out = np.asarray(q.apply(params, obs, act))
  assert np.all(out[0] != out[1])


@pytest.mark.parametrize("batch", [(7,), (2, 5)])
def test_value_network_shape(batch):
  """VNetwork returns [...batch], float32."""
  v = networks.VNetwork((8, 8))
  obs = jnp.ones(batch + (4,))
  out = v.apply(v.init(jax.random.PRNGKey(0), obs), obs)
  chex.assert_shape(out, batch)
  chex.assert_type(out, jnp.float32)


def test_make_networks():
  """make_networks configures the three modules and they init/apply with the right shapes."""
  n = networks.make_networks(action_dim=3, num_components=2, hidden_sizes=[np.int64(16), 8],
                             activation="tanh", num_q=2)
  assert isinstance(n, networks.SACNetworks)
  assert (n.policy.action_dim, n.policy.num_components) == (3, 2)
  for module in n:
    assert module.hidden_sizes == (16, 8)
    assert all(type(h) is int for h in module.hidden_sizes)
    assert module.activation == "tanh"
  assert n.q.num_q == 2
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  obs, act = jnp.ones((4, 5)), jnp.ones((4, 3))
  out = n.policy.apply(n.policy.init(keys[0], obs), obs)
  chex.assert_shape([out.means, out.log_stds], (4, 2, 3))
  chex.assert_shape(n.q.apply(n.q.init(keys[1], obs, act), obs, act), (2, 4))
  chex.assert_shape(n.v.apply(n.v.init(keys[2], obs), obs), (4,))


def test_make_networks_defaults_are_the_paper():
  """Defaults: K = 4, two hidden layers of 128 ReLU units, one Q head."""
  n = networks.make_networks(action_dim=2)
  assert n.policy.num_components == 4
  assert all(m.hidden_sizes == (128, 128) and m.activation == "relu" for m in n)
  assert n.q.num_q == 1


def test_bad_activation_raises_value_error_naming_it():
  """An unknown activation name raises ValueError that names the bad value."""
  with pytest.raises(ValueError, match="relux"):
    networks.get_activation("relux")
  n = networks.make_networks(action_dim=2, hidden_sizes=(4,), activation="relux")
  with pytest.raises(ValueError, match="relux"):
    n.v.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))


# ----------------------------------------------------------------------------------------------
# the observation transform


def np_symlog(x):
  """float64 sign(x) log(1 + |x|)."""
  x = np.asarray(x, np.float64)
  return np.sign(x) * np.log(1.0 + np.abs(x))


def test_symlog_matches_float64_and_none_is_the_identity():
  x = np.array([-3e4, -3000.0, -10.0, -1.0, -1e-3, 0.0, 1e-6, 0.5, 7.0, 4000.0], np.float32)
  out = jax.jit(lambda v: networks.transform_obs(v, "symlog"))(x)
  chex.assert_type(out, jnp.float32)
  chex.assert_trees_all_close(f64(out), np_symlog(x), atol=1e-6, rtol=1e-6)
  np.testing.assert_array_equal(networks.transform_obs(x, "none"), x)
  with pytest.raises(ValueError, match=r"obs_transform='log': must be one of \['none', "
                     r"'symlog'\]"):
    networks.transform_obs(x, "log")
  with pytest.raises(ValueError, match="obs_transform='log'"):
    networks.make_networks(2, obs_transform="log")
  from sac_jax import settings
  assert settings.BY_NAME["obs_transform"].choices == networks.OBS_TRANSFORMS


def test_every_network_reads_the_transformed_observation():
  """With obs_transform='symlog' each network (GMM policy, twin Q, V, DDPG's actor and its
  Q) gives, with the same params, what the plain network gives on symlog(obs) (float64
  reference); the action entering Q is not transformed."""
  rng = np.random.default_rng(5)
  obs = (rng.normal(size=(6, 4)) * np.array([1.0, 30.0, 500.0, 4000.0])).astype(np.float32)
  act = rng.uniform(-1, 1, (6, 2)).astype(np.float32)
  sym_obs = np_symlog(obs).astype(np.float32)
  pairs = [
      (networks.GMMPolicy(2, 3, (16, 16), obs_transform="symlog"),
       networks.GMMPolicy(2, 3, (16, 16)), False),
      (networks.QNetwork((16, 8), num_q=2, obs_transform="symlog"),
       networks.QNetwork((16, 8), num_q=2), True),
      (networks.VNetwork((16, 8), obs_transform="symlog"), networks.VNetwork((16, 8)), False),
      (networks.DeterministicPolicy(2, (16, 8), obs_transform="symlog"),
       networks.DeterministicPolicy(2, (16, 8)), False),
      (networks.QNetwork((16, 8), final_init_scale=3e-3, obs_transform="symlog"),
       networks.QNetwork((16, 8), final_init_scale=3e-3), True),
  ]
  for sym, plain, takes_action in pairs:
    args = (obs, act) if takes_action else (obs,)
    params = sym.init(jax.random.PRNGKey(0), *args)
    chex.assert_trees_all_equal_shapes(params, plain.init(jax.random.PRNGKey(0), *args))
    got = jax.jit(sym.apply)(params, *args)
    want = plain.apply(params, sym_obs, *args[1:])
    chex.assert_trees_all_close(f64(got), f64(want), atol=1e-5, rtol=1e-5)
    # ...and the transform matters on these inputs.
    raw = plain.apply(params, *args)
    assert max(np.max(np.abs(np.asarray(a) - np.asarray(b)))
               for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(raw))) > 1e-2


def test_learners_build_their_networks_with_the_configs_transform():
  from sac_jax import agent, ddpg
  sac = agent.Agent(agent.SACConfig(obs_transform="symlog"), 3, 2)
  assert (sac.nets.policy.obs_transform, sac.nets.q.obs_transform,
          sac.nets.v.obs_transform) == ("symlog",) * 3
  assert agent.Agent(agent.SACConfig(), 3, 2).nets.policy.obs_transform == "none"
  dd = ddpg.DDPGAgent(ddpg.DDPGConfig(obs_transform="symlog"), 3, 2)
  assert (dd.policy.obs_transform, dd.q.obs_transform) == ("symlog", "symlog")
