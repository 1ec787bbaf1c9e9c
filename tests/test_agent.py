"""The learner: member equivalence under vmap, determinism, one compile, per-member
hyperparameters, the switch from uniform to policy actions, and the paper's evaluation
action. One gradient step is checked against a float64 reference in test_gradient_step.py."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from sac_jax import agent, gmm, networks, replay

OBS, ACT = 3, 2
TINY = dict(hidden_sizes=(16, 16), batch_size=8, buffer_size=64, start_steps=10)


def _feed(ag, step_fn, state, num_calls, m, seed=0, start=0):
  """Drives step_fn with a fixed pseudo-random stream of transitions (same for all seeds)."""
  rng = np.random.default_rng(seed)
  obs = rng.normal(size=(m, OBS)).astype(np.float32)
  tr = agent.empty_transition(m, OBS, ACT)
  for t in range(start, start + num_calls):
    state, action, metrics = step_fn(state, tr, t > 0, obs, ag.ready_to_update(t))
    nxt = rng.normal(size=(m, OBS)).astype(np.float32)
    tr = replay.Transition(obs, np.asarray(action), rng.normal(size=m).astype(np.float32),
                           nxt, (rng.random(m) < 0.1).astype(np.float32))
    obs = nxt
  return state, action, metrics, tr, obs


@pytest.mark.parametrize("kind", ["paper", "modern"])
def test_member_of_vmapped_step_equals_single_member_step(kind):
  """Member i of jit(vmap(step)) equals jit(step) fed member i's state, batch and obs."""
  extra = dict(grad_steps=2) if kind == "paper" else dict(
      num_components=1, policy_gradient="reparameterized", num_q=2, auto_alpha=True)
  ag = agent.Agent(agent.SACConfig(**TINY, **extra), OBS, ACT)
  m = 3
  # Per-member reward scales and learning rates (HParams is the one place of both).
  hp = agent.HParams.from_config(ag.config).stack(
      m, reward_scale=[1.0, 2.0, 5.0], lr_policy=[3e-4, 1e-3, 3e-3], lr_q=[1e-3, 3e-4, 1e-2],
      lr_v=[3e-3, 1e-3, 3e-4], lr_alpha=[1e-2, 3e-4, 1e-3])
  state = ag.init_members(jax.random.split(jax.random.PRNGKey(1), m), hp)
  state, _, _, tr, obs = _feed(ag, ag.make_step(), state, 20, m)
  singles = [jax.jit(ag.step)(agent.member(state, i), agent.member(tr, i), True, obs[i], True)
             for i in range(m)]
  old_grad_steps = int(state.updates[0])
  new_state, actions, metrics = ag.make_step()(state, tr, True, obs, True)  # donates state
  for i, (s_i, a_i, m_i) in enumerate(singles):
    # vmap may reorder float32 reductions: 1e-5 relative, 1e-6 absolute.
    chex.assert_trees_all_close(agent.member(new_state, i), s_i, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(actions[i], a_i, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(agent.member(metrics, i), m_i, rtol=1e-5, atol=1e-6)
  assert int(new_state.updates[0]) == old_grad_steps + ag.config.grad_steps


def _train_params(seed):
  ag = agent.Agent(agent.SACConfig(**TINY), OBS, ACT)
  state = ag.init_members(jax.random.split(jax.random.PRNGKey(seed), 2))
  state, *_ = _feed(ag, ag.make_step(), state, 30, 2)
  return state


def test_same_seed_is_bitwise_equal_and_different_seeds_differ():
  a, b, c = _train_params(0), _train_params(0), _train_params(1)
  assert int(a.updates[0]) > 10
  chex.assert_trees_all_equal(a.policy_params, b.policy_params)
  chex.assert_trees_all_equal(a.q_params, b.q_params)
  chex.assert_trees_all_equal(a.v_target_params, b.v_target_params)
  chex.assert_trees_all_equal(a.key, b.key)
  for x, y in zip(jax.tree.leaves(a.policy_params), jax.tree.leaves(c.policy_params)):
    assert not np.array_equal(np.asarray(x), np.asarray(y))
  # Members of one run differ too (they have different keys).
  assert not np.array_equal(np.asarray(jax.tree.leaves(a.q_params)[0][0]),
                            np.asarray(jax.tree.leaves(a.q_params)[0][1]))


def test_step_compiles_once_over_many_calls():
  """Warm-up, first transition and learning phases all reuse one compiled step."""
  ag = agent.Agent(agent.SACConfig(**TINY), OBS, ACT)
  ag.step = chex.assert_max_traces(ag.step, n=1)
  step_fn = ag.make_step()
  state = ag.init_members(jax.random.split(jax.random.PRNGKey(0), 2))
  state, *_ = _feed(ag, step_fn, state, 40, 2)
  assert int(state.updates[0]) == 40 - ag.config.start_steps


def test_apply_adam_is_optax_adam_at_the_members_learning_rate():
  """The learning rate is HParams' only: the optimizer state holds Adam's moments
  (optax.scale_by_adam) and `apply_adam` scales by -lr. Five steps equal an independent
  optax.adam(lr) bitwise, and the former optax.inject_hyperparams(optax.adam) state (the
  rate inside it) up to its float32 b2; under vmap each member follows its own rate."""
  import optax
  rng = np.random.default_rng(0)
  f32 = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  params = {"w": f32(3, 4), "b": f32(4)}
  grads = [{"w": f32(3, 4), "b": f32(4)} for _ in range(5)]
  lrs = np.array([3e-3, 1e-4, 0.5], np.float32)

  def run(step, init, lr):
    p, s = params, init
    for g in grads:
      p, s = step(g, s, p, lr)
    return p

  def optax_step(opt):
    def step(g, s, p, lr):
      updates, s = opt.update(g, s, p)
      return optax.apply_updates(p, updates), s
    return step

  for lr in lrs:
    ours = run(agent.apply_adam, agent.adam().init(params), jnp.float32(lr))
    adam = optax.adam(jnp.float32(lr))
    chex.assert_trees_all_equal(ours, run(optax_step(adam), adam.init(params), None))
    old = optax.inject_hyperparams(optax.adam)(learning_rate=jnp.float32(lr))
    before = run(optax_step(old), old.init(params), None)
    # The old state held b2 as a float32 array: float32(0.999) makes 1 - b2 (and Adam's
    # second-moment bias correction) 1.3e-5 relative off, so the distance moved differs
    # by up to about 1e-5 of itself, plus an ulp of the params (1.2e-7 near 1).
    for k in params:
      np.testing.assert_allclose(np.asarray(ours[k] - params[k]),
                                 np.asarray(before[k] - params[k]), rtol=3e-5, atol=5e-7)
  # Three members in one vmapped state, each at its own rate, equal three separate runs.
  stacked = jax.tree.map(lambda x: jnp.stack([x] * 3), params)
  p, s = stacked, jax.vmap(agent.adam().init)(stacked)
  for g in grads:
    p, s = jax.vmap(agent.apply_adam, in_axes=(None, 0, 0, 0))(g, s, p, jnp.asarray(lrs))
  for i, lr in enumerate(lrs):
    adam = optax.adam(jnp.float32(lr))
    # vmap may fuse the same float32 operations differently: 1e-7 relative.
    chex.assert_trees_all_close(agent.member(p, i),
                                run(optax_step(adam), adam.init(params), None),
                                rtol=1e-7, atol=1e-7)
  assert not hasattr(agent.adam().init(params), "hyperparams")


def test_per_member_learning_rates_equal_separate_single_member_runs():
  """Three members with the same key and data but their own learning rates, trained in
  one vmapped state for 25 env steps (15 updates), equal three separate one-member runs."""
  ag = agent.Agent(agent.SACConfig(**TINY, auto_alpha=True), OBS, ACT)
  lrs = dict(lr_policy=[3e-4, 3e-3, 1e-3], lr_q=[1e-2, 3e-4, 1e-3],
             lr_v=[1e-3, 1e-2, 3e-4], lr_alpha=[3e-3, 1e-3, 1e-2])
  hp = agent.HParams.from_config(ag.config).stack(3, **lrs)
  key = jax.random.PRNGKey(3)

  def train(m, hparams):
    state = ag.init_members(jnp.stack([key] * m), hparams)
    rng = np.random.default_rng(0)
    step_fn = ag.make_step()
    obs = np.repeat(rng.normal(size=(1, OBS)).astype(np.float32), m, 0)
    tr = agent.empty_transition(m, OBS, ACT)
    for t in range(25):
      state, action, _ = step_fn(state, tr, t > 0, obs, ag.ready_to_update(t))
      nxt = np.repeat(rng.normal(size=(1, OBS)).astype(np.float32), m, 0)
      rew = np.repeat(rng.normal(size=1).astype(np.float32), m)
      tr = replay.Transition(obs, np.asarray(action), rew, nxt, np.zeros(m, np.float32))
      obs = nxt
    return state

  together = train(3, hp)
  learned = ("policy_params", "q_params", "v_params", "v_target_params", "log_alpha")
  for i in range(3):
    alone = train(1, jax.tree.map(lambda x: x[i:i + 1], hp))
    for name in learned:
      # vmap may reorder float32 reductions; 15 updates compound it: 1e-4 relative.
      chex.assert_trees_all_close(agent.member(getattr(together, name), i),
                                  agent.member(getattr(alone, name), 0),
                                  rtol=1e-4, atol=1e-5)
  # The rates matter: members 0 and 1 differ.
  assert not np.allclose(np.asarray(together.log_alpha[0]),
                         np.asarray(together.log_alpha[1]))


@pytest.mark.parametrize("name,value", [("reward_scale", 7.0), ("lr_q", 1e-2),
                                        ("tau", 0.5), ("gamma", 0.5), ("alpha", 0.0)])
def test_per_member_hyperparameter_changes_only_that_member(name, value):
  """Three members with the SAME key and data; only member 2 gets another `name`."""
  ag = agent.Agent(agent.SACConfig(**TINY), OBS, ACT)
  default = getattr(agent.HParams.from_config(ag.config), name)
  hp = agent.HParams.from_config(ag.config).stack(3, **{name: [default, default, value]})
  keys = jnp.stack([jax.random.PRNGKey(3)] * 3)
  state = ag.init_members(keys, hp)
  rng = np.random.default_rng(0)
  step_fn = ag.make_step()
  obs = np.repeat(rng.normal(size=(1, OBS)).astype(np.float32), 3, 0)
  tr = agent.empty_transition(3, OBS, ACT)
  for t in range(25):
    state, action, _ = step_fn(state, tr, t > 0, obs, ag.ready_to_update(t))
    nxt = np.repeat(rng.normal(size=(1, OBS)).astype(np.float32), 3, 0)
    rew = np.repeat(rng.normal(size=1).astype(np.float32), 3)
    tr = replay.Transition(obs, np.asarray(action), rew, nxt, np.zeros(3, np.float32))
    obs = nxt
  params = (state.q_params, state.v_params, state.v_target_params, state.policy_params)
  chex.assert_trees_all_equal(agent.member(params, 0), agent.member(params, 1))
  changed = [not np.array_equal(np.asarray(x[0]), np.asarray(x[2]))
             for x in jax.tree.leaves(params)]
  assert any(changed)


class _FakePolicy:
  def apply(self, params, obs):
    b = obs.shape[:-1]
    k, d = params["means"].shape
    return networks.GMMOutput(jnp.broadcast_to(params["logits"], b + (k,)),
                              jnp.broadcast_to(params["means"], b + (k, d)),
                              jnp.zeros(b + (k, d)))


class _FakeQ:
  """Two heads: Q = -|a - target|^2 and that minus a constant (min picks the second)."""
  def apply(self, params, obs, action):
    q = -jnp.sum((action - params["target"]) ** 2, axis=-1)
    return jnp.stack([q, q - 1.0])


def test_eval_action_picks_best_q_component_not_heaviest_weight():
  ag = agent.Agent(agent.SACConfig(num_components=3, num_q=2), OBS, ACT)
  ag.nets = networks.SACNetworks(policy=_FakePolicy(), q=_FakeQ(), v=None)
  means = np.array([[2.0, 2.0], [0.1, -0.3], [-1.0, 0.5]], np.float32)
  pp = {"logits": jnp.array([10.0, -10.0, 0.0]), "means": jnp.asarray(means)}
  target = np.array([0.2, -0.2], np.float32)
  obs = np.zeros((4, OBS), np.float32)
  action = jax.jit(ag.eval_action)(pp, {"target": jnp.asarray(target)}, obs)
  modes = np.tanh(means.astype(np.float64))
  best = np.argmin(((modes - target) ** 2).sum(-1))
  assert best == 1
  chex.assert_trees_all_close(np.asarray(action), np.broadcast_to(modes[best], (4, 2)),
                              atol=1e-6)


def test_step_actions_are_uniform_during_start_steps_and_in_range():
  ag = agent.Agent(agent.SACConfig(**{**TINY, "start_steps": 1000}), OBS, ACT)
  state = ag.init_members(jax.random.split(jax.random.PRNGKey(0), 1))
  step_fn = ag.make_step()
  acts = []
  obs = np.zeros((1, OBS), np.float32)
  tr = agent.empty_transition(1, OBS, ACT)
  for t in range(300):
    state, a, _ = step_fn(state, tr, False, obs, False)
    acts.append(np.asarray(a)[0])
  acts = np.array(acts)
  assert np.all(np.abs(acts) <= 1.0)
  # Uniform on [-1, 1]: mean 0 (sd 0.033 for 300 draws), variance 1/3.
  assert np.all(np.abs(acts.mean(0)) < 0.15)
  assert np.all(np.abs(acts.var(0) - 1 / 3) < 0.08)


class _FakeTwinQ:
  """Two linear heads that rank the candidates differently: Q_0 = w_0 . a, Q_1 = w_1 . a."""
  def apply(self, params, obs, action):
    return jnp.moveaxis(action @ params["w"].T, -1, 0)  # [2, ...]


def test_eval_action_takes_the_argmax_of_the_minimum_over_q_heads():
  """Head 0 prefers component 0, head 1 component 1, their mean and max component 0; only
  the minimum over heads (the compromise) picks component 2, the lightest one."""
  ag = agent.Agent(agent.SACConfig(num_components=3, num_q=2), OBS, ACT)
  ag.nets = networks.SACNetworks(policy=_FakePolicy(), q=_FakeTwinQ(), v=None)
  modes = np.array([[0.8, 0.0], [0.0, 0.8], [0.3, 0.3]])
  pp = {"logits": jnp.array([10.0, 0.0, -10.0]),
        "means": jnp.asarray(np.arctanh(modes), jnp.float32)}
  w = np.array([[3.0, 0.0], [0.0, 3.0]])
  obs = np.zeros((4, OBS), np.float32)
  action = jax.jit(ag.eval_action)(pp, {"w": jnp.asarray(w, jnp.float32)}, obs)
  q = modes @ w.T                                   # [K, heads], float64 reference
  best = np.argmax(q.min(axis=1))
  assert best == 2
  assert {np.argmax(q[:, 0]), np.argmax(q[:, 1]), np.argmax(q.mean(1)),
          np.argmax(q.max(1))}.isdisjoint({best})
  # tanh(arctanh(m)) in float32: 1e-6 absolute.
  np.testing.assert_allclose(np.asarray(action), np.broadcast_to(modes[best], (4, 2)),
                             atol=1e-6)


def test_step_switches_from_uniform_to_policy_samples_when_env_steps_reach_start_steps():
  """Real `step` calls store one transition each; the action of the call that has stored t
  transitions acts at env step t: uniform on [-1, 1]^d for t < start_steps, a sample of the
  policy from t = start_steps on. The policy is made very narrow (each member its own mean,
  std e^-10 before tanh) so every action can be told apart: a uniform draw lands within
  8 std of the policy mean with probability about 1e-7."""
  start, m = 150, 2
  ag = agent.Agent(agent.SACConfig(**{**TINY, "start_steps": start, "num_components": 2,
                                      "log_std_min": -10.0}), OBS, ACT)
  state = ag.init_members(jax.random.split(jax.random.PRNGKey(0), m))
  mu = np.arctanh(np.array([[0.5, -0.3], [-0.6, 0.2]]))           # per member, pre-squash
  k, d = 2, ACT
  head = state.policy_params["params"]["Dense_0"]
  bias = np.zeros((m, k * (1 + 2 * d)), np.float32)
  bias[:, k:k + k * d] = np.tile(mu, (1, k))                        # both components at mu
  bias[:, k + k * d:] = -40.0                                       # log std -> -10 (soft)
  state.policy_params["params"]["Dense_0"] = {"kernel": jnp.zeros_like(head["kernel"]),
                                              "bias": jnp.asarray(bias)}
  step_fn = ag.make_step()
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(m, OBS)).astype(np.float32)
  tr = agent.empty_transition(m, OBS, ACT)
  acts = []
  for t in range(2 * start):
    state, a, _ = step_fn(state, tr, t > 0, obs, False)  # no updates: the policy stays put
    acts.append(np.asarray(a, np.float64))
    tr = replay.Transition(obs, np.asarray(a), np.zeros(m, np.float32), obs,
                           np.zeros(m, np.float32))
  assert int(state.env_steps[0]) == 2 * start - 1
  acts = np.stack(acts, axis=1)                                     # [m, T, d]
  z = (np.arctanh(np.clip(acts, -1 + 1e-7, 1 - 1e-7)) - mu[:, None]) / np.exp(-10.0)
  is_policy = np.all(np.abs(z) < 8.0, axis=-1)                      # [m, T]
  expected = np.broadcast_to(np.arange(2 * start) >= start, is_policy.shape)
  assert np.array_equal(is_policy, expected), (
      f"policy-like steps per member: {[np.flatnonzero(p).tolist() for p in is_policy]}")
  for i in range(m):
    uni = acts[i, :start]
    assert np.all(np.abs(uni) <= 1.0)
    for j in range(d):
      # Uniform on [-1, 1]: Kolmogorov-Smirnov against scipy's uniform; 150 draws, so the
      # p-value is a fair check (a draw from [0, 1] or from the policy gives p < 1e-20).
      ks = stats.kstest(uni[:, j], "uniform", args=(-1.0, 2.0))
      assert ks.pvalue > 1e-3, f"member {i} dim {j}: {ks}, range {uni[:, j].min():.3f} .. "\
                               f"{uni[:, j].max():.3f}"
    # The policy's samples are samples, not its mode: z ~ N(0, 1) (150 draws: the mean's
    # standard error is 0.08, the variance's 0.12; bounds at about 4 of them).
    zi = z[i, start:]
    assert np.all(np.abs(zi.mean(0)) < 0.35), f"member {i}: mean of z {zi.mean(0)}"
    assert np.all(np.abs(zi.var(0) - 1.0) < 0.5), f"member {i}: variance of z {zi.var(0)}"


def test_bad_config_values_are_refused_with_their_name():
  for kwargs, needle in [(dict(num_components=0), "num_components=0"),
                         (dict(gamma=1.0), "gamma=1"), (dict(lr=0.0), "lr=0"),
                         (dict(batch_size=512, buffer_size=100), "batch_size=512"),
                         (dict(policy_gradient="reparameterized"), "num_components=1"),
                         (dict(num_q=3), "num_q=3"), (dict(policy_gradient="ppo"), "ppo")]:
    with pytest.raises(ValueError, match=needle):
      agent.SACConfig(**kwargs)
  with pytest.raises(ValueError, match="unknown per-member"):
    agent.HParams.from_config(agent.SACConfig()).stack(2, learning_rate=[1, 2])


@pytest.mark.parametrize("kind", ["paper", "modern", "ddpg"])
def test_init_members_stacks_each_members_own_init(kind):
  """Member i of init_members(keys, hparams) is init(keys[i], hparams[i]) bitwise, replay
  buffers included (empty, [capacity, ...] per member)."""
  from sac_jax import ddpg
  if kind == "ddpg":
    ag = ddpg.DDPGAgent(ddpg.DDPGConfig(**TINY), OBS, ACT)
    hp = ddpg.DDPGHParams.from_config(ag.config).stack(3, expl_noise=[0.1, 0.2, 0.3])
  else:
    extra = {} if kind == "paper" else dict(
        num_components=1, policy_gradient="reparameterized", num_q=2, auto_alpha=True,
        value_network=False)
    ag = agent.Agent(agent.SACConfig(**TINY, **extra), OBS, ACT)
    hp = agent.HParams.from_config(ag.config).stack(3, reward_scale=[1.0, 2.0, 3.0])
  keys = jax.random.split(jax.random.PRNGKey(7), 3)
  state = ag.init_members(keys, hp)
  one = jax.jit(ag.init)
  for i in range(3):
    want = one(keys[i], type(hp)(*(x[i] for x in hp)))
    chex.assert_trees_all_equal(agent.member(state, i), want)
  assert state.replay.data.obs.shape == (3, TINY["buffer_size"], OBS)
  # Different keys, different params.
  assert any(not np.array_equal(np.asarray(x[0]), np.asarray(x[1]))
             for x in jax.tree.leaves(state.policy_params))


def _random_batch(b, seed):
  """A float32 minibatch of b random transitions (about 30% terminal)."""
  rng = np.random.default_rng(seed)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  return replay.Transition(f32(rng.normal(size=(b, OBS))), f32(rng.uniform(-1, 1, (b, ACT))),
                           f32(rng.normal(size=b)), f32(rng.normal(size=(b, OBS))),
                           f32(rng.uniform(size=b) < 0.3))


def _ref_squash_terms(u):
  """float64 sum_j log(1 - tanh(u_j)^2) (exact) and sum_j log(1 - tanh(u_j)^2 + 1e-6)
  (capped), with 1 - tanh(u)^2 = 4 e^{-2|u|} / (1 + e^{-2|u|})^2 (no cancellation)."""
  a = np.abs(np.asarray(u, np.float64))
  sech2 = 4.0 * np.exp(-2.0 * a) / (1.0 + np.exp(-2.0 * a)) ** 2
  return np.log(sech2).sum(-1), np.log(sech2 + 1e-6).sum(-1)


@pytest.mark.parametrize("policy_gradient, k", [
    ("likelihood_ratio", 3), ("mixture_reparameterized", 2), ("reparameterized", 1)])
def test_gradient_step_reports_where_the_policy_samples(policy_gradient, k):
  """The step's metrics abs_u and log_std are the mean |u| of its fresh pre-tanh action
  and the mean log std of the pre-update policy at the batch (float64, from the step's own
  key), on a policy pushed into the tanh's tails (means at +-6 and +-9 by dimension), where
  |u|, |mu| and |tanh(u)| differ."""
  b = 16
  ag = agent.Agent(agent.SACConfig(hidden_sizes=(16, 16), batch_size=b, buffer_size=64,
                                   num_components=k, policy_gradient=policy_gradient),
                   OBS, ACT)
  state = ag.init(jax.random.PRNGKey(0))
  pp = jax.tree.map(jnp.array, state.policy_params)
  bias = pp["params"]["Dense_0"]["bias"]
  shift = np.tile(np.array([6.0, -9.0]), k)
  pp["params"]["Dense_0"]["bias"] = bias.at[k:k + k * ACT].add(shift)
  pp["params"]["Dense_0"]["bias"] = pp["params"]["Dense_0"]["bias"].at[k + k * ACT:].add(
      np.linspace(-1.0, 0.5, k * ACT))
  state = state._replace(policy_params=pp)
  batch = _random_batch(b, seed=3)
  key = jax.random.PRNGKey(7)
  metrics = jax.jit(ag.gradient_step)(state, batch, key)[1]
  out = ag.nets.policy.apply(pp, batch.obs)
  means, log_stds = np.asarray(out.means, np.float64), np.asarray(out.log_stds, np.float64)
  if policy_gradient == "reparameterized":
    eps = np.asarray(jax.random.normal(key, (b, ACT)), np.float64)
    u = means[:, 0] + np.exp(log_stds[:, 0]) * eps
  else:
    k_sample = jax.random.split(key)[0] if policy_gradient == "mixture_reparameterized" else key
    u = np.asarray(gmm.sample(k_sample, out.logits, out.means, out.log_stds), np.float64)
  assert 5.0 < np.mean(np.abs(u)) < 10.0
  chex.assert_shape([metrics["abs_u"], metrics["log_std"]], ())
  np.testing.assert_allclose(np.float64(metrics["abs_u"]), np.mean(np.abs(u)), rtol=1e-5)
  np.testing.assert_allclose(np.float64(metrics["log_std"]), np.mean(log_stds), rtol=1e-5,
                             atol=1e-6)


@pytest.mark.parametrize("policy_gradient, value_network, k", [
    ("likelihood_ratio", True, 3), ("mixture_reparameterized", True, 3),
    ("reparameterized", False, 1)])
def test_squash_correction_reaches_every_log_pi_of_the_step(policy_gradient, value_network,
                                                            k):
  """`squash_correction` is the term each log pi of a gradient step uses: the fresh action's
  (the V target), the policy loss's, the value-free critic's next action's. The same step
  is run with 'exact' and 'capped' on a policy whose means sit in the tanh's tails, and
  each metric's change equals the float64 change of its log pi terms at the step's own
  draws (recomputed from its key)."""
  b = 16
  base = dict(hidden_sizes=(16, 16), batch_size=b, buffer_size=64, num_components=k,
              policy_gradient=policy_gradient, value_network=value_network, alpha=0.5,
              gamma=0.9, num_q=1 if value_network else 2)
  ags = {sq: agent.Agent(agent.SACConfig(**base, squash_correction=sq), OBS, ACT)
         for sq in ("exact", "capped")}
  ag = ags["exact"]
  state = ag.init(jax.random.PRNGKey(0))
  pp = jax.tree.map(jnp.array, state.policy_params)
  bias = pp["params"]["Dense_0"]["bias"]
  signs = np.where(np.arange(k * ACT) % 2 == 0, 1.0, -1.0)
  pp["params"]["Dense_0"]["bias"] = bias.at[k:k + k * ACT].set(12.0 * signs)
  state = state._replace(policy_params=pp)
  batch = _random_batch(b, seed=2)
  key = jax.random.PRNGKey(5)
  m = {sq: a.gradient_step(state, batch, key)[1] for sq, a in ags.items()}
  change = lambda name: np.float64(m["capped"][name]) - np.float64(m["exact"][name])
  out = ag.nets.policy.apply(pp, batch.obs)
  if policy_gradient == "reparameterized":
    eps = jax.random.normal(key, (b, ACT))
    u = np.asarray(out.means[:, 0], np.float64) + np.exp(
        np.asarray(out.log_stds[:, 0], np.float64)) * np.asarray(eps, np.float64)
  elif policy_gradient == "mixture_reparameterized":
    k_sample, k_eps = jax.random.split(key)
    u = np.asarray(gmm.sample(k_sample, out.logits, out.means, out.log_stds), np.float64)
    eps_k = np.asarray(jax.random.normal(k_eps, out.means.shape), np.float64)
    u_k = (np.asarray(out.means, np.float64)
           + np.exp(np.asarray(out.log_stds, np.float64)) * eps_k)          # [B, K, d]
  else:
    u = np.asarray(gmm.sample(key, out.logits, out.means, out.log_stds), np.float64)
  assert np.all(np.abs(u) > 5.0)  # in the tails, where the two terms part
  exact, capped = _ref_squash_terms(u)
  # log pi = log p(u) - term: its change is exact - capped.
  d_log_pi = exact - capped
  assert np.all(d_log_pi < -1.0)
  tol = dict(rtol=1e-4, atol=1e-3)
  if value_network:
    # V target = Q(s, a) - alpha log pi(a|s) at the fresh action.
    np.testing.assert_allclose(change("v_target"), -0.5 * np.mean(d_log_pi), **tol)
  else:
    # Q target = c r + gamma (1 - done) (min Qbar(s', a') - alpha log pi(a'|s')).
    out_next = ag.nets.policy.apply(pp, batch.next_obs)
    u_next = gmm.sample(jax.random.fold_in(key, 1), out_next.logits, out_next.means,
                        out_next.log_stds)
    e_next, c_next = _ref_squash_terms(u_next)
    not_done = 1.0 - np.asarray(batch.terminated, np.float64)
    np.testing.assert_allclose(change("q_target"),
                               np.mean(0.9 * not_done * -0.5 * (e_next - c_next)), **tol)
  if policy_gradient == "mixture_reparameterized":
    w = np.asarray(jax.nn.softmax(out.logits), np.float64)
    e_k, c_k = _ref_squash_terms(u_k)
    expected = np.mean(np.sum(w * (e_k - c_k), axis=-1))
  else:
    expected = np.mean(d_log_pi)
  np.testing.assert_allclose(change("log_pi"), expected, **tol)
