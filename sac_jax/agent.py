"""The SAC learner: config, state, init, G gradient steps, acting and evaluation.

One member's functions are written unbatched; `make_step`, `make_eval_act` and
`init_members` wrap them over a leading member axis M (`jax.vmap`; `lax.map` for init's
random draws) and `jax.jit` them once. Algorithm 2 of the paper: for each env step, act,
store, then G gradient steps; all three gradients of a step are taken from the same
pre-update params (or, with update_order 'sequential', the policy's after V and Q have
stepped), then V_target moves.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sac_jax import gmm, losses, networks, replay, settings

POLICY_GRADIENTS = settings.BY_NAME["policy_gradient"].choices


@dataclasses.dataclass(frozen=True)
class SACConfig:
  """Everything that fixes array shapes or the computation graph, plus the default values
  of the per-member hyperparameters (see `HParams`). Paper-era defaults (DESIGN.md 1)."""
  # Shape- or graph-changing: one value per process.
  num_components: int = 4
  hidden_sizes: tuple[int, ...] = (128, 128)
  activation: str = "relu"
  batch_size: int = 128
  buffer_size: int = 1_000_000
  grad_steps: int = 1               # G gradient steps per env step
  start_steps: int = 1000           # uniformly random actions before this many env steps
  policy_gradient: str = "likelihood_ratio"
  num_q: int = 1
  auto_alpha: bool = False
  # True: the paper's soft value network V with a target copy. False: the value-free critic
  # of SAC 2018b (target Q networks, the next state's soft value from a fresh a' ~ pi).
  value_network: bool = True
  # "joint": every gradient of a step at the same pre-update params (the paper's code);
  # "sequential": the critic steps first, the policy's gradient reads the updated critic.
  update_order: str = "joint"
  target_entropy: float | None = None  # None: -act_dim (used with auto_alpha)
  # Soft bounds of the policy's log-stds (networks.soft_clip; the authors hard-clipped to
  # [-20, 2], which float32 cannot represent at the low end: see networks.LOG_STD_MIN).
  log_std_min: float = networks.LOG_STD_MIN
  log_std_max: float = networks.LOG_STD_MAX
  # The squash term of log pi: "exact" (the paper's appendix C) or "capped", the first
  # release's log(1 - tanh(u)^2 + 1e-6) (gmm.squashed_log_prob).
  squash_correction: str = "exact"
  # How every network sees an observation: "none" or "symlog" (networks.transform_obs).
  obs_transform: str = "none"
  # Per-member hyperparameters: these are the defaults every member starts from.
  lr: float = 3e-4
  lr_policy: float | None = None    # None: lr
  lr_q: float | None = None         # None: lr
  gamma: float = 0.99
  tau: float = 0.01
  reward_scale: float = 1.0
  alpha: float = 1.0                # temperature; initial value when auto_alpha
  reg: float = 1e-3

  def __post_init__(self):
    validate_config(self)  # first: hidden_sizes may still be strings ('128') here
    object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))


def validate_config(c: SACConfig) -> None:
  """Raises ValueError naming the bad value and what is allowed (the rules of every
  setting live in sac_jax.settings)."""
  settings.validate(settings.config_values(c, "sac"))


class HParams(NamedTuple):
  """Per-member scalar hyperparameters: arrays of shape () per member, [M] when stacked.

  The learning rates live here only (the optimizer states hold Adam's moments), so a swept
  learning rate is a per-member value like reward_scale."""
  reward_scale: Any
  alpha: Any
  tau: Any
  gamma: Any
  reg: Any
  lr_policy: Any
  lr_q: Any
  lr_v: Any
  lr_alpha: Any

  @classmethod
  def from_config(cls, c: SACConfig) -> "HParams":
    return cls(reward_scale=c.reward_scale, alpha=c.alpha, tau=c.tau, gamma=c.gamma,
               reg=c.reg, lr_policy=c.lr if c.lr_policy is None else c.lr_policy,
               lr_q=c.lr if c.lr_q is None else c.lr_q, lr_v=c.lr, lr_alpha=c.lr)

  def stack(self, num_members: int, **overrides: Sequence[float]) -> "HParams":
    """[M] float32 arrays: the defaults, with `overrides` giving per-member values."""
    unknown = set(overrides) - set(self._fields)
    if unknown:
      raise ValueError(f"unknown per-member hyperparameter(s) {sorted(unknown)}; "
                       f"allowed: {list(self._fields)}")
    cols = {}
    for name in self._fields:
      v = np.asarray(overrides.get(name, getattr(self, name)), np.float32)
      if v.ndim == 0:
        v = np.full((num_members,), v, np.float32)
      if v.shape != (num_members,):
        raise ValueError(f"{name} has {v.shape[0]} values, expected one per member "
                         f"({num_members})")
      cols[name] = v
    return type(self)(**cols)


def validate_hparams(h: HParams, auto_alpha: bool = False) -> None:
  """Raises ValueError naming the first member's value that breaks its setting's rule."""
  settings.validate({**h._asdict(), "auto_alpha": auto_alpha, "algorithm": "sac"})


class TrainState(NamedTuple):
  """One member's whole training state (a leading [M] axis on every leaf when stacked).

  With the value network (the paper), `q_target_params` is None; without it (SAC 2018b's
  value-free critic), `v_params`, `v_target_params` and `v_opt_state` are None: what is not
  used is neither created, stored nor checkpointed.
  """
  policy_params: Any
  q_params: Any
  v_params: Any
  v_target_params: Any
  q_target_params: Any
  policy_opt_state: Any
  q_opt_state: Any
  v_opt_state: Any
  log_alpha: jax.Array        # shape=(), float32; used when auto_alpha
  alpha_opt_state: Any
  hparams: HParams
  replay: replay.ReplayState
  key: jax.Array              # PRNG key
  env_steps: jax.Array        # shape=(), int32: transitions stored so far
  updates: jax.Array          # shape=(), int32: gradient steps taken so far
  diverged_at: jax.Array      # shape=(), int32: env step at which a non-finite value froze
                              # this member (Agent.step); -1 while it is healthy


class FreshAction(NamedTuple):
  """A step's fresh action at s from the pre-update policy, held fixed (stop_gradient)."""
  u: jax.Array          # [B, d] pre-tanh sample, u ~ p(.|s) (or the reparameterized one)
  log_pi: jax.Array     # [B] log pi(tanh(u)|s)
  eps: Any              # the reparameterized loss's noise ([B, d] or [B, K, d]), or None
  stats: losses.Metrics  # losses.policy_statistics of u and the policy's log stds


def adam() -> optax.GradientTransformation:
  """Adam without its learning rate: the state holds the moment estimates only. The rate
  is the member's HParams value (one place, per member), applied by `apply_adam`."""
  return optax.scale_by_adam()


def apply_adam(grads: Any, opt_state: Any, params: Any, lr: jax.Array
               ) -> tuple[Any, Any]:
  """One Adam step with learning rate `lr` -> (params, opt_state); equal to
  `optax.adam(lr)` (its last step is `optax.scale(-lr)`, the same product)."""
  updates, opt_state = adam().update(grads, opt_state, params)
  step_size = -1 * lr
  updates = jax.tree.map(lambda u: step_size * u, updates)
  return optax.apply_updates(params, updates), opt_state


@jax.jit  # jitted: the arrays may span several processes' devices
def _learned_or_given(restored: Any, given: Any) -> Any:
  """(log alpha, its Adam state) per member [M]: the restored ones where that Adam state
  has stepped (a learned temperature), else the given ones."""
  learned = restored[1].count > 0
  pick = lambda r, g: jnp.where(learned.reshape(learned.shape + (1,) * (r.ndim - 1)), r, g)
  return jax.tree.map(pick, restored, given)


class Agent:
  """Bundles the config, the networks and the pure functions built from them."""

  def __init__(self, config: SACConfig, obs_dim: int, act_dim: int):
    self.config = config
    self.obs_dim = int(obs_dim)
    self.act_dim = int(act_dim)
    self.nets = networks.make_networks(act_dim, config.num_components,
                                       config.hidden_sizes, config.activation,
                                       config.num_q, config.log_std_min,
                                       config.log_std_max, config.obs_transform)
    self.target_entropy = (float(config.target_entropy) if config.target_entropy
                           is not None else -float(act_dim))

  # ---------------------------------------------------------------- init
  def init(self, key: chex.PRNGKey, hparams: HParams | None = None) -> TrainState:
    """One member's state; `hparams` leaves are scalars (defaults from the config)."""
    c = self.config
    h = hparams if hparams is not None else HParams.from_config(c)
    h = HParams(*(jnp.asarray(x, jnp.float32) for x in h))
    kp, kq, kv, key = jax.random.split(key, 4)
    obs = jnp.zeros((1, self.obs_dim), jnp.float32)
    act = jnp.zeros((1, self.act_dim), jnp.float32)
    pp = self.nets.policy.init(kp, obs)
    qp = self.nets.q.init(kq, obs, act)
    vp = self.nets.v.init(kv, obs) if c.value_network else None
    copy = lambda tree: jax.tree.map(jnp.array, tree)
    log_alpha = jnp.log(jnp.maximum(h.alpha, 1e-30))
    return TrainState(
        policy_params=pp, q_params=qp, v_params=vp,
        v_target_params=copy(vp) if c.value_network else None,
        q_target_params=None if c.value_network else copy(qp),
        policy_opt_state=adam().init(pp),
        q_opt_state=adam().init(qp),
        v_opt_state=adam().init(vp) if c.value_network else None,
        log_alpha=log_alpha,
        alpha_opt_state=adam().init(log_alpha),
        hparams=h,
        replay=self.init_replay(),
        key=key,
        env_steps=jnp.zeros((), jnp.int32),
        updates=jnp.zeros((), jnp.int32),
        diverged_at=jnp.full((), -1, jnp.int32))

  def init_members(self, keys: jax.Array, hparams: HParams | None = None,
                   sharding: jax.sharding.Sharding | None = None) -> TrainState:
    """Stacked state for M members: keys [M], hparams leaves [M] (default: the config's).

    With `sharding` (the member axis over a mesh, sac_jax.parallel) every leaf is created
    already spread: no device ever holds all M replay buffers, and with several processes
    each creates only its own members' shards (keys and hparams must then be equal on
    every process).
    """
    m = keys.shape[0]
    h = hparams if hparams is not None else self.default_hparams(m)
    self.validate_hparams(h)
    kw = {} if sharding is None else dict(out_shardings=sharding)
    return jax.jit(self._init_stacked, **kw)(
        np.asarray(keys), type(h)(*(np.asarray(x, np.float32) for x in h)))

  def _init_stacked(self, keys: jax.Array, hparams: Any) -> Any:
    """`init` of every member, stacked. The random parts run one member at a time
    (`lax.map`): XLA on the CPU compiles a random draw with a member axis (a rank-3
    threefry fusion) several times slower than one member's draw, the same values either
    way, and init runs once. The replay buffers (zeros, the large part) are created
    batched, so that under a sharding no device builds all of them."""
    one = lambda kh: self.init(*kh)._replace(replay=None)
    state = jax.lax.map(one, (keys, hparams))
    buffers = jax.vmap(lambda _: self.init_replay())(keys)
    return state._replace(replay=buffers)

  def init_replay(self) -> replay.ReplayState:
    """One member's empty replay buffer."""
    return replay.init(self.config.buffer_size, self.obs_dim, self.act_dim)

  def branch_state(self, restored: TrainState, given: TrainState) -> TrainState:
    """The state a branch starts from (stacked states): `restored`, another run's (its
    params, optimizer moments, replay, keys, counters, frozen members), with `given`'s
    per-member hyperparameters and replay capacity (`replay.fit`: the newest transitions
    kept). The temperature: with auto_alpha, a member whose temperature the source learned
    (its Adam state has stepped) keeps it; any other starts where a new run would, at
    `given`'s (log alpha and a fresh Adam state)."""
    out = restored._replace(hparams=given.hparams,
                            replay=replay.fit(restored.replay, given.replay))
    if not self.config.auto_alpha:
      return out._replace(log_alpha=given.log_alpha, alpha_opt_state=given.alpha_opt_state)
    log_alpha, opt = _learned_or_given((restored.log_alpha, restored.alpha_opt_state),
                                       (given.log_alpha, given.alpha_opt_state))
    return out._replace(log_alpha=log_alpha, alpha_opt_state=opt)

  def default_hparams(self, num_members: int) -> HParams:
    """[M] hyperparameters, every member at the config's values."""
    return HParams.from_config(self.config).stack(num_members)

  def validate_hparams(self, h: HParams) -> None:
    validate_hparams(h, auto_alpha=self.config.auto_alpha)

  # ---------------------------------------------------------------- pieces
  def alpha(self, state: TrainState) -> jax.Array:
    return jnp.exp(state.log_alpha) if self.config.auto_alpha else state.hparams.alpha

  def _q_min(self, q_params, obs, action) -> jax.Array:
    return jnp.min(self.nets.q.apply(q_params, obs, action), axis=0)

  # ---------------------------------------------------------------- update
  def fresh_action(self, policy_params, obs: jax.Array, key: chex.PRNGKey) -> FreshAction:
    """The step's fresh action at s from the current policy (before any update of it).

    `key` draws u ~ p(.|s) (the V target, the likelihood ratio, the temperature) and the
    eps of a reparameterized policy loss; `fold_in(key, 1)` is left to the value-free Q
    target's a' ~ pi(.|s').
    """
    c = self.config
    out = self.nets.policy.apply(policy_params, obs)
    eps = None
    if c.policy_gradient == "reparameterized":
      eps = jax.random.normal(key, out.means.shape[:-2] + out.means.shape[-1:])
      u = gmm.reparameterize(out.means[..., 0, :], out.log_stds[..., 0, :], eps)
    elif c.policy_gradient == "mixture_reparameterized":
      # The V target and the temperature use ONE sampled action per state, as in the other
      # branches; only the policy loss sums over the K components, each with its own eps_k.
      k_sample, k_eps = jax.random.split(key)
      u = gmm.sample(k_sample, out.logits, out.means, out.log_stds)
      eps = jax.random.normal(k_eps, out.means.shape)  # [B, K, d]
    else:
      u = gmm.sample(key, out.logits, out.means, out.log_stds)
    u = jax.lax.stop_gradient(u)
    log_pi = jax.lax.stop_gradient(
        gmm.squashed_log_prob(out.logits, out.means, out.log_stds, u, c.squash_correction))
    return FreshAction(u=u, log_pi=log_pi, eps=eps,
                       stats=losses.policy_statistics(jax.lax.stop_gradient(out.log_stds), u))

  def critic_gradients(self, state: TrainState, batch: replay.Transition,
                       key: chex.PRNGKey, fresh: FreshAction
                       ) -> tuple[Any, Any, losses.Metrics]:
    """The gradients of J_V (eq. 7; None without the value network) and J_Q (eq. 9) at
    `state`'s params -> (v_grads, q_grads, metrics)."""
    c, nets, h = self.config, self.nets, state.hparams
    alpha = self.alpha(state)
    metrics: dict = {}
    v_grads = None
    if c.value_network:
      q_pi = jax.lax.stop_gradient(
          self._q_min(state.q_params, batch.obs, jnp.tanh(fresh.u)))
      v_grad_fn = jax.value_and_grad(losses.value_loss, has_aux=True)
      (_, v_metrics), v_grads = v_grad_fn(state.v_params, nets.v.apply, batch.obs, q_pi,
                                          fresh.log_pi, alpha)
      metrics.update(v_metrics)
      # eq. 9 (corrected): the target V of the NEXT state.
      v_next = nets.v.apply(state.v_target_params, batch.next_obs)
    else:
      # SAC 2018b: V(s') = min_j Qbar_j(s', a') - alpha log pi(a'|s'), a' ~ pi(.|s') fresh.
      out_next = nets.policy.apply(state.policy_params, batch.next_obs)
      u_next = gmm.sample(jax.random.fold_in(key, 1), out_next.logits, out_next.means,
                          out_next.log_stds)
      log_pi_next = gmm.squashed_log_prob(out_next.logits, out_next.means,
                                          out_next.log_stds, u_next, c.squash_correction)
      q_next = self._q_min(state.q_target_params, batch.next_obs, jnp.tanh(u_next))
      v_next = jax.lax.stop_gradient(losses.soft_value_target(q_next, log_pi_next, alpha))
    q_grad_fn = jax.value_and_grad(losses.q_loss, has_aux=True)
    (_, q_metrics), q_grads = q_grad_fn(
        state.q_params, nets.q.apply, batch.obs, batch.action, batch.reward,
        batch.terminated, v_next, h.reward_scale, h.gamma)
    metrics.update(q_metrics)
    return v_grads, q_grads, metrics

  def policy_gradients(self, state: TrainState, batch: replay.Transition,
                       fresh: FreshAction) -> tuple[Any, Any, losses.Metrics]:
    """The gradients of J_pi (eq. 12-13, or a reparameterized loss) and of the
    temperature's loss -> (policy_grads, log_alpha_grad or None, metrics).

    Q and V are read from `state`: the pre-update critic (update_order 'joint') or the
    critic after this step's update ('sequential'); the policy is always the pre-update
    one, which drew `fresh`.
    """
    c, nets, h = self.config, self.nets, state.hparams
    alpha = self.alpha(state)
    pp, qp = state.policy_params, state.q_params
    metrics: dict = {}
    if c.policy_gradient == "likelihood_ratio":
      q_pi = jax.lax.stop_gradient(self._q_min(qp, batch.obs, jnp.tanh(fresh.u)))
      v_s = jax.lax.stop_gradient(nets.v.apply(state.v_params, batch.obs))
      p_grad_fn = jax.value_and_grad(losses.likelihood_ratio_policy_loss, has_aux=True)
      (_, p_metrics), p_grads = p_grad_fn(pp, nets.policy.apply, batch.obs, fresh.u, q_pi,
                                          v_s, alpha, h.reg, c.squash_correction)
    else:
      q_fn = lambda o, a: self._q_min(qp, o, a)
      loss_fn = (losses.reparameterized_policy_loss
                 if c.policy_gradient == "reparameterized"
                 else losses.mixture_reparameterized_policy_loss)
      p_grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
      (_, p_metrics), p_grads = p_grad_fn(pp, nets.policy.apply, q_fn, batch.obs,
                                          fresh.eps, alpha, h.reg, c.squash_correction)
    metrics.update(p_metrics)
    a_grad = None
    if c.auto_alpha:
      a_grad_fn = jax.value_and_grad(losses.temperature_loss, has_aux=True)
      (_, a_metrics), a_grad = a_grad_fn(state.log_alpha, fresh.log_pi,
                                         self.target_entropy)
      metrics.update(a_metrics)
    metrics["alpha"] = alpha
    return p_grads, a_grad, metrics

  def gradient_step(self, state: TrainState, batch: replay.Transition, key: chex.PRNGKey
                    ) -> tuple[TrainState, losses.Metrics]:
    """One gradient step of V (or none) and Q, of the policy (and alpha), then the target
    network (V's, or the Q heads' without V) moves by Polyak averaging.

    update_order 'joint' (the paper's code, Algorithm 2 read as one simultaneous step):
    every gradient at the same pre-update params. 'sequential': V and Q step first, then
    the policy's (and alpha's) gradient reads the updated V and Q, as Algorithm 2's lines
    are printed one after another (and as the later SAC code bases order them). Either
    way the policy's gradient uses the fresh action its pre-update params drew.
    """
    h = state.hparams
    fresh = self.fresh_action(state.policy_params, batch.obs, key)
    v_grads, q_grads, metrics = self.critic_gradients(state, batch, key, fresh)
    new_qp, q_opt = apply_adam(q_grads, state.q_opt_state, state.q_params, h.lr_q)
    new = state._replace(q_params=new_qp, q_opt_state=q_opt, updates=state.updates + 1)
    if self.config.value_network:
      new_vp, v_opt = apply_adam(v_grads, state.v_opt_state, state.v_params, h.lr_v)
      new = new._replace(v_params=new_vp, v_opt_state=v_opt)
    # `new` holds the stepped V and Q, and still the pre-update policy and temperature.
    critic_read = new if self.config.update_order == "sequential" else state
    p_grads, a_grad, p_metrics = self.policy_gradients(critic_read, batch, fresh)
    new_pp, p_opt = apply_adam(p_grads, state.policy_opt_state, state.policy_params,
                               h.lr_policy)
    new = new._replace(policy_params=new_pp, policy_opt_state=p_opt)
    if self.config.value_network:
      new = new._replace(v_target_params=optax.incremental_update(
          new.v_params, state.v_target_params, h.tau))
    else:
      new = new._replace(q_target_params=optax.incremental_update(
          new_qp, state.q_target_params, h.tau))
    if self.config.auto_alpha:
      log_alpha, alpha_opt = apply_adam(a_grad, state.alpha_opt_state, state.log_alpha,
                                        h.lr_alpha)
      new = new._replace(log_alpha=log_alpha, alpha_opt_state=alpha_opt)
    return new, {**metrics, **p_metrics, **fresh.stats}

  def update(self, state: TrainState, num_steps: int) -> tuple[TrainState, losses.Metrics]:
    """`num_steps` gradient steps under lax.scan, each on a fresh uniform minibatch.

    Returns the metrics averaged over the steps.
    """
    def body(s, _):
      key, k_batch, k_step = jax.random.split(s.key, 3)
      s = s._replace(key=key)
      batch = replay.sample(s.replay, k_batch, self.config.batch_size)
      return self.gradient_step(s, batch, k_step)

    state, metrics = jax.lax.scan(body, state, None, length=num_steps)
    return state, jax.tree.map(jnp.mean, metrics)

  # ---------------------------------------------------------------- acting
  def sample_action(self, policy_params, obs: jax.Array, key: chex.PRNGKey) -> jax.Array:
    """a = tanh(u), u ~ p(.|s): the exploration action in [-1, 1]^d."""
    out = self.nets.policy.apply(policy_params, obs)
    return jnp.tanh(gmm.sample(key, out.logits, out.means, out.log_stds))

  def explore(self, state: TrainState, obs: jax.Array, key: chex.PRNGKey) -> jax.Array:
    """The action taken in the training env after start_steps: a policy sample."""
    return self.sample_action(state.policy_params, obs, key)

  def eval_action(self, policy_params, q_params, obs: jax.Array) -> jax.Array:
    """The paper's deterministic action: tanh(mu_k*), k* = argmax_k Q(s, tanh(mu_k(s)))."""
    out = self.nets.policy.apply(policy_params, obs)
    modes = gmm.component_modes(out.means)                        # [..., K, d]
    obs_k = jnp.broadcast_to(obs[..., None, :], modes.shape[:-1] + obs.shape[-1:])
    q = self._q_min(q_params, obs_k, modes)                       # [..., K]
    return gmm.select_component(modes, q)

  def metric_names(self) -> list[str]:
    shapes = jax.eval_shape(lambda s: self.update(s, 1)[1],
                            jax.eval_shape(self.init, jax.random.PRNGKey(0)))
    return sorted(shapes)

  def step(self, state: TrainState, transition: replay.Transition, has_transition,
           obs: jax.Array, do_update) -> tuple[TrainState, jax.Array, losses.Metrics]:
    """One env step's device work for one member, fused into one call.

    Inserts `transition` (when `has_transition`), runs G gradient steps (when
    `do_update`), and returns the next action for `obs`: uniform in [-1, 1]^d while fewer
    than `start_steps` transitions are stored, a policy sample after. `has_transition` and
    `do_update` are scalars shared by all members (unbatched under vmap, so the
    `lax.cond` stays a real branch).

    Divergence: if the metrics, the new online params (CHECKED) or the policy's action are
    not all finite, the member is frozen: its params and optimizer states keep their values from before
    this call (a `jnp.where` on those subtrees only, never on the replay buffer), its
    `diverged_at` becomes the env step, and its action is zeros from then on (a vector
    env cannot skip one sub-env). A frozen member never thaws; the others are untouched.
    """
    c = self.config
    state = state._replace(
        replay=replay.add(state.replay, transition, has_transition),
        env_steps=state.env_steps + jnp.asarray(has_transition, jnp.int32))

    template = jax.eval_shape(lambda s: self.update(s, c.grad_steps)[1], state)
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), template)
    new, metrics = jax.lax.cond(
        do_update, lambda s: self.update(s, c.grad_steps), lambda s: (s, zeros), state)

    key, k_act, k_uni = jax.random.split(new.key, 3)
    policy_a = self.explore(new, obs, k_act)
    uniform_a = jax.random.uniform(k_uni, policy_a.shape, minval=-1.0, maxval=1.0)
    action = jnp.where(new.env_steps < c.start_steps, uniform_a, policy_a)

    healthy = state.diverged_at < 0
    finite = self._all_finite((metrics, policy_a) + self._checked(new))
    keep = healthy & finite
    learned = jax.tree.map(lambda a, b: jnp.where(keep, a, b), self._learned(new),
                           self._learned(state))
    new = new._replace(**dict(zip(self.LEARNED, learned)), key=key, diverged_at=jnp.where(
        healthy & ~finite, state.env_steps, state.diverged_at))
    return new, jnp.where(keep, action, jnp.zeros_like(action)), metrics

  # The TrainState fields a diverged member freezes (params, optimizer states, counters).
  LEARNED = ("policy_params", "q_params", "v_params", "v_target_params", "q_target_params",
             "policy_opt_state", "q_opt_state", "v_opt_state", "log_alpha",
             "alpha_opt_state", "updates")

  # The fields whose finiteness is checked after every call: the online parameters. The
  # rest of LEARNED follows from them: targets are Polyak averages of online params that
  # were finite, and Adam's moments are finite wherever the gradients were (a non-finite
  # gradient makes the params, and mostly the losses, non-finite too). Checking all of
  # LEARNED read about 4x as much memory per step: 6% of the equal-work step's time and
  # 14% of the paper step's on a 2-core CPU.
  CHECKED = ("policy_params", "q_params", "v_params", "log_alpha")

  def _checked(self, state: TrainState) -> tuple:
    return tuple(getattr(state, f) for f in self.CHECKED)

  def _learned(self, state: TrainState) -> tuple:
    return tuple(getattr(state, f) for f in self.LEARNED)

  @staticmethod
  def _all_finite(tree: Any) -> jax.Array:
    """One bool: every floating leaf of `tree` is finite (a reduction per leaf)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)

  # ------------------------------------------------ overlapped acting (LoopConfig.overlap)
  def act(self, state: TrainState, obs: jax.Array, has_transition
          ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The next action for `obs` from the CURRENT params, leaving the state unchanged.

    The first of the two device calls per env step with `LoopConfig.overlap`; the second,
    `store_and_update`, is dispatched right after and runs while the host steps the envs.
    The action is exactly what `step` (the synchronous call) would return for this state
    with `do_update` False: `step(state, transition, has_transition, obs, False)`. So the
    action taken at env step t comes from the params after the update of env step t - 1,
    one update behind the synchronous path (whose action at t follows the update of t).

    `has_transition`: the pending transition counts towards start_steps, as in `step`.
    Returns (action, key, ok): zeros for a frozen (or now diverging) member; `key` is the
    state's next PRNG key and `ok` False where the policy's action is not finite: both go
    to `store_and_update`, which installs the key and freezes a member whose action was
    not finite.
    """
    c = self.config
    key, k_act, k_uni = jax.random.split(state.key, 3)
    policy_a = self.explore(state, obs, k_act)
    uniform_a = jax.random.uniform(k_uni, policy_a.shape, minval=-1.0, maxval=1.0)
    stored = state.env_steps + jnp.asarray(has_transition, jnp.int32)
    action = jnp.where(stored < c.start_steps, uniform_a, policy_a)
    ok = self._all_finite((policy_a,) + self._checked(state))
    keep = (state.diverged_at < 0) & ok
    return jnp.where(keep, action, jnp.zeros_like(action)), key, ok

  def store_and_update(self, state: TrainState, key: jax.Array, act_ok,
                       transition: replay.Transition, has_transition, do_update
                       ) -> tuple[TrainState, losses.Metrics]:
    """The second device call per env step with `LoopConfig.overlap` (after `act`).

    Installs `key` (from `act`), inserts `transition` (when `has_transition`), runs G
    gradient steps (when `do_update`). Divergence as in `step`: if `act_ok` is False or
    the metrics or the new params are not all finite, the member is frozen (params and
    optimizer states keep their values from before this call; never a select over the
    replay buffer) and `diverged_at` becomes the env step. A non-finite action found by
    `act` at env step t thus freezes the member at the params it had then (those after
    the update of step t - 1), where `step` would have frozen it before the update of t.
    """
    c = self.config
    state = state._replace(
        key=key, replay=replay.add(state.replay, transition, has_transition),
        env_steps=state.env_steps + jnp.asarray(has_transition, jnp.int32))
    template = jax.eval_shape(lambda s: self.update(s, c.grad_steps)[1], state)
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), template)
    new, metrics = jax.lax.cond(
        do_update, lambda s: self.update(s, c.grad_steps), lambda s: (s, zeros), state)
    healthy = state.diverged_at < 0
    finite = jnp.asarray(act_ok) & self._all_finite((metrics,) + self._checked(new))
    keep = healthy & finite
    learned = jax.tree.map(lambda a, b: jnp.where(keep, a, b), self._learned(new),
                           self._learned(state))
    new = new._replace(**dict(zip(self.LEARNED, learned)), diverged_at=jnp.where(
        healthy & ~finite, state.env_steps, state.diverged_at))
    return new, metrics

  def ready_to_update(self, env_steps: int) -> bool:
    """Host-side rule for `do_update`: past start_steps and a full batch stored."""
    c = self.config
    return env_steps >= max(c.start_steps, c.batch_size)

  # ---------------------------------------------------------------- jitted, vmapped
  def make_step(self) -> Callable[..., tuple[TrainState, jax.Array, losses.Metrics]]:
    """jit(vmap(step)) over members; the state is donated."""
    vstep = jax.vmap(self.step, in_axes=(0, 0, None, 0, None))
    return jax.jit(vstep, donate_argnums=0)

  def make_act(self) -> Callable[..., tuple[jax.Array, jax.Array, jax.Array]]:
    """jit(vmap(act)) over members: (state, obs[M, obs_dim], has_transition) -> (action,
    key, ok). Reads the state (not donated); what it does not use (the replay buffer)
    is pruned from the compiled call."""
    return jax.jit(jax.vmap(self.act, in_axes=(0, 0, None)))

  def make_update(self) -> Callable[..., tuple[TrainState, losses.Metrics]]:
    """jit(vmap(store_and_update)) over members: (state, key, ok, transition,
    has_transition, do_update) -> (state, metrics); the state is donated."""
    vupdate = jax.vmap(self.store_and_update, in_axes=(0, 0, 0, 0, None, None))
    return jax.jit(vupdate, donate_argnums=0)

  def make_eval_act(self) -> Callable[[Any, Any, jax.Array], jax.Array]:
    """jit(vmap(eval_action)): (policy_params[M], q_params[M], obs[M, n, obs_dim])."""
    return jax.jit(jax.vmap(self.eval_action))


def empty_transition(num_members: int, obs_dim: int, act_dim: int) -> replay.Transition:
  """A placeholder for the first call, where there is no transition yet."""
  z = lambda *s: np.zeros((num_members,) + s, np.float32)
  return replay.Transition(z(obs_dim), z(act_dim), z(), z(obs_dim), z())


def member(tree: Any, i: int) -> Any:
  """One member's view of stacked state."""
  return jax.tree.map(lambda x: x[i], tree)
