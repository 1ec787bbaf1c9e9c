"""DDPG (Lillicrap et al. 2015), the SAC paper's off-policy baseline, in the same framework.

A deterministic tanh actor mu(s), one Q, a target actor and a target Q moved by Polyak
averaging after every gradient step, Gaussian exploration noise on the action. It reuses
the replay buffer, the fused per-env-step device call (`agent.Agent.step`: insert, G
updates under lax.scan, next actions, divergence freezing), members, sweeps, checkpoints
and the host loop; only the config, the state's networks, the losses and the acting differ.

Losses (pure functions, first argument the params they differentiate; B transitions):

    y     = c r + gamma (1 - done) Q'(s', mu'(s'))                      (critic target)
    J_Q   = mean (Q(s, a) - sg[y])^2 + wd / 2 * sum ||W_Q||^2             (critic)
    J_mu  = -mean Q(s, mu(s))                                            (actor)

Where we follow Lillicrap et al. (their section 7): Adam with lr 1e-4 (actor) and 1e-3
(critic), L2 weight decay 1e-2 on the critic's weight matrices (not biases), gamma 0.99,
tau 0.001, two hidden layers of 400 and 300 ReLU units, output layers initialized
U(-3e-3, 3e-3), batch 64, replay 1e6. Where we differ, and why:
- exploration is Gaussian noise N(0, sigma^2) with sigma = 0.1 on the [-1, 1] action,
  clipped to the bounds, not an Ornstein-Uhlenbeck process (the issue asks for Gaussian
  noise; Fujimoto et al. 2018 found no benefit from OU on these tasks);
- no batch normalization (the low-dimensional MuJoCo observations are not rescaled here,
  and SAC's networks have none either, so the two differ only in the algorithm);
- the action enters the critic at the input layer (with the state), not at the second
  layer, as in our SAC's Q network;
- the first `start_steps` env steps act uniformly at random, as SAC's do, so both start
  from the same kind of data;
- the actor's and critic's gradients are taken from the same pre-update parameters, then
  both target networks move (our SAC's order, Algorithm 2); `update_order='sequential'`
  takes the actor's gradient on the critic after its step instead, as Lillicrap et al.'s
  Algorithm 1 lists the updates.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from sac_jax import agent as agent_lib
from sac_jax import networks, replay, settings

Metrics = dict[str, jax.Array]
sg = jax.lax.stop_gradient


# ------------------------------------------------------------------------------- losses
def critic_target(reward: jax.Array, terminated: jax.Array, q_target_next: jax.Array,
                  reward_scale: jax.Array, gamma: jax.Array) -> jax.Array:
  """y = c r + gamma (1 - done) Q'(s', mu'(s')); done is termination only."""
  chex.assert_equal_shape([reward, terminated, q_target_next])
  return reward_scale * reward + gamma * (1.0 - terminated) * q_target_next


def weight_l2(params: Any) -> jax.Array:
  """1/2 sum of squares of every weight matrix ("kernel") of `params`; biases excluded."""
  leaves = jax.tree_util.tree_leaves_with_path(params)
  sq = [jnp.sum(jnp.square(x)) for path, x in leaves
        if getattr(path[-1], "key", None) == "kernel"]
  return 0.5 * sum(sq) if sq else jnp.zeros(())


def critic_loss(q_params: Any, q_apply, obs: jax.Array, action: jax.Array,
                reward: jax.Array, terminated: jax.Array, q_target_next: jax.Array,
                reward_scale: jax.Array, gamma: jax.Array, weight_decay: jax.Array
                ) -> tuple[jax.Array, Metrics]:
  """J_Q = mean (Q(s, a) - sg[y])^2 + weight_decay * weight_l2(q_params)."""
  q = q_apply(q_params, obs, action)[0]  # one head
  target = sg(critic_target(reward, terminated, q_target_next, reward_scale, gamma))
  chex.assert_equal_shape([q, target])
  td = jnp.mean(jnp.square(q - target))
  decay = weight_decay * weight_l2(q_params)
  loss = td + decay
  return loss, {"q_loss": td, "q_weight_decay": decay, "q": jnp.mean(q),
                "q_target": jnp.mean(target)}


def actor_loss(policy_params: Any, policy_apply, q_fn, obs: jax.Array
               ) -> tuple[jax.Array, Metrics]:
  """J_mu = -mean Q(s, mu(s)); q_fn(obs, action) -> [B] is not differentiated here."""
  a = policy_apply(policy_params, obs)
  q = q_fn(obs, a)
  loss = -jnp.mean(q)
  return loss, {"policy_loss": loss, "action_abs": jnp.mean(jnp.abs(a))}


def explore(mean_action: jax.Array, key: chex.PRNGKey, noise: jax.Array) -> jax.Array:
  """clip(mu(s) + N(0, noise^2), -1, 1)."""
  eps = jax.random.normal(key, mean_action.shape, mean_action.dtype)
  return jnp.clip(mean_action + noise * eps, -1.0, 1.0)


# ------------------------------------------------------------------------------- learner
@dataclasses.dataclass(frozen=True)
class DDPGConfig:
  """Shape- or graph-changing settings (one per process) and the per-member defaults."""
  hidden_sizes: tuple[int, ...] = (400, 300)
  activation: str = "relu"
  batch_size: int = 64
  buffer_size: int = 1_000_000
  grad_steps: int = 1
  start_steps: int = 1000
  update_order: str = "joint"       # or "sequential": the actor reads the updated critic
  final_init_scale: float = 3e-3
  obs_transform: str = "none"       # or "symlog": networks.transform_obs
  # Per-member hyperparameters: the defaults every member starts from.
  lr_policy: float = 1e-4
  lr_q: float = 1e-3
  gamma: float = 0.99
  tau: float = 0.001
  reward_scale: float = 1.0
  expl_noise: float = 0.1
  weight_decay: float = 1e-2

  def __post_init__(self):
    validate_config(self)  # first: hidden_sizes may still be strings ('400') here
    object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))


def validate_config(c: DDPGConfig) -> None:
  """Raises ValueError naming the bad value and what is allowed (the rules of the settings
  live in sac_jax.settings; final_init_scale is DDPG's own, not a setting)."""
  settings.validate(settings.config_values(c, "ddpg"))
  if not c.final_init_scale > 0:
    raise ValueError(f"final_init_scale={c.final_init_scale}: must be > 0")


class DDPGHParams(NamedTuple):
  """Per-member scalars: arrays of shape () per member, [M] when stacked."""
  reward_scale: Any
  tau: Any
  gamma: Any
  expl_noise: Any
  weight_decay: Any
  lr_policy: Any
  lr_q: Any

  @classmethod
  def from_config(cls, c: DDPGConfig) -> "DDPGHParams":
    return cls(reward_scale=c.reward_scale, tau=c.tau, gamma=c.gamma,
               expl_noise=c.expl_noise, weight_decay=c.weight_decay,
               lr_policy=c.lr_policy, lr_q=c.lr_q)

  stack = agent_lib.HParams.stack


def validate_hparams(h: DDPGHParams, auto_alpha: bool = False) -> None:
  del auto_alpha  # the signature of agent.validate_hparams
  settings.validate({**h._asdict(), "algorithm": "ddpg"})


class DDPGState(NamedTuple):
  """One member's whole DDPG training state (a leading [M] axis when stacked)."""
  policy_params: Any
  q_params: Any
  policy_target_params: Any
  q_target_params: Any
  policy_opt_state: Any
  q_opt_state: Any
  hparams: DDPGHParams
  replay: replay.ReplayState
  key: jax.Array              # PRNG key
  env_steps: jax.Array        # shape=(), int32: transitions stored so far
  updates: jax.Array          # shape=(), int32: gradient steps taken so far
  diverged_at: jax.Array      # shape=(), int32: env step a non-finite value froze it; -1


class DDPGAgent(agent_lib.Agent):
  """DDPG with the Agent interface: init, init_members, gradient_step, update, step,
  eval_action, make_step, make_eval_act (`step`, `update` and the jitting are SAC's)."""

  LEARNED = ("policy_params", "q_params", "policy_target_params", "q_target_params",
             "policy_opt_state", "q_opt_state", "updates")
  CHECKED = ("policy_params", "q_params")
  HPARAMS = DDPGHParams

  def __init__(self, config: DDPGConfig, obs_dim: int, act_dim: int):
    self.config = config
    self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
    self.policy = networks.DeterministicPolicy(act_dim, config.hidden_sizes,
                                               config.activation, config.final_init_scale,
                                               config.obs_transform)
    self.q = networks.QNetwork(config.hidden_sizes, config.activation, 1,
                               config.final_init_scale, config.obs_transform)

  def default_hparams(self, num_members: int) -> DDPGHParams:
    return DDPGHParams.from_config(self.config).stack(num_members)

  def validate_hparams(self, h: DDPGHParams) -> None:
    validate_hparams(h)

  def branch_state(self, restored: DDPGState, given: DDPGState) -> DDPGState:
    """`restored` (another run's state) with `given`'s per-member hyperparameters and
    replay capacity (`replay.fit`: the newest transitions kept)."""
    return restored._replace(hparams=given.hparams,
                             replay=replay.fit(restored.replay, given.replay))

  def init(self, key: chex.PRNGKey, hparams: DDPGHParams | None = None) -> DDPGState:
    c = self.config
    h = hparams if hparams is not None else DDPGHParams.from_config(c)
    h = DDPGHParams(*(jnp.asarray(x, jnp.float32) for x in h))
    kp, kq, key = jax.random.split(key, 3)
    obs = jnp.zeros((1, self.obs_dim), jnp.float32)
    act = jnp.zeros((1, self.act_dim), jnp.float32)
    pp = self.policy.init(kp, obs)
    qp = self.q.init(kq, obs, act)
    return DDPGState(
        policy_params=pp, q_params=qp,
        policy_target_params=jax.tree.map(jnp.array, pp),
        q_target_params=jax.tree.map(jnp.array, qp),
        policy_opt_state=agent_lib.adam().init(pp),
        q_opt_state=agent_lib.adam().init(qp),
        hparams=h, replay=self.init_replay(), key=key,
        env_steps=jnp.zeros((), jnp.int32), updates=jnp.zeros((), jnp.int32),
        diverged_at=jnp.full((), -1, jnp.int32))

  def gradient_step(self, state: DDPGState, batch: replay.Transition, key: chex.PRNGKey
                    ) -> tuple[DDPGState, Metrics]:
    """One critic step and one actor step, then both targets move. The actor's gradient
    reads the pre-update critic (update_order 'joint') or the updated one ('sequential')."""
    del key  # deterministic: the batch carries all the randomness
    h = state.hparams
    pp, qp = state.policy_params, state.q_params
    a_next = self.policy.apply(state.policy_target_params, batch.next_obs)
    q_next = self.q.apply(state.q_target_params, batch.next_obs, a_next)[0]
    (_, q_metrics), q_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        qp, self.q.apply, batch.obs, batch.action, batch.reward, batch.terminated, q_next,
        h.reward_scale, h.gamma, h.weight_decay)
    new_qp, q_opt = agent_lib.apply_adam(q_grads, state.q_opt_state, qp, h.lr_q)
    critic = new_qp if self.config.update_order == "sequential" else qp
    q_fn = lambda o, a: self.q.apply(critic, o, a)[0]
    (_, p_metrics), p_grads = jax.value_and_grad(actor_loss, has_aux=True)(
        pp, self.policy.apply, q_fn, batch.obs)
    new_pp, p_opt = agent_lib.apply_adam(p_grads, state.policy_opt_state, pp, h.lr_policy)
    new = state._replace(
        policy_params=new_pp, q_params=new_qp, policy_opt_state=p_opt, q_opt_state=q_opt,
        policy_target_params=optax.incremental_update(new_pp, state.policy_target_params,
                                                      h.tau),
        q_target_params=optax.incremental_update(new_qp, state.q_target_params, h.tau),
        updates=state.updates + 1)
    return new, {**q_metrics, **p_metrics}

  def explore(self, state: DDPGState, obs: jax.Array, key: chex.PRNGKey) -> jax.Array:
    """The exploration action: clip(mu(s) + N(0, expl_noise^2), -1, 1)."""
    return explore(self.policy.apply(state.policy_params, obs), key,
                   state.hparams.expl_noise)

  def eval_action(self, policy_params, q_params, obs: jax.Array) -> jax.Array:
    """The deterministic action mu(s) (exploration noise off, as in the paper)."""
    del q_params
    return self.policy.apply(policy_params, obs)
