"""A trained policy from a run directory, as a plain function from observations to actions.

    import sac_jax
    policy = sac_jax.load_policy("runs/InvertedPendulum-v5-20261123-232910", member=0)
    action = policy(obs)          # in the env's own bounds; obs [obs_dim] or [n, obs_dim]
    policy.unit(obs)              # the same action in the agent's [-1, 1]^d
    sampler = sac_jax.load_policy(run_dir, deterministic=False)
    action = sampler(obs, jax.random.PRNGKey(0))   # a sample (a key, or an int seed)

No training machinery is built: the config is rebuilt from the run directory's `run.json`
(the resolved flags `experiments.run` wrote), and only the arrays acting needs are read
from the orbax checkpoint (a partial restore: the member-stacked policy params, the Q
params for SAC's deterministic action, the per-member hyperparameters and the divergence
step; never the replay buffers or optimizer states).

What the actions are (the agent acts in [-1, 1]^d; `sac_jax.envs` rescales to the env's
bounds with gymnasium's `RescaleAction`, and so does this module, with the same affine map,
then clips to the bounds):
- deterministic (the paper's evaluation action, `Agent.eval_action`): SAC: tanh(mu_k*) with
  k* = argmax_k min_heads Q(s, tanh(mu_k(s))); DDPG: mu(s);
- stochastic (`deterministic=False`, called with a PRNG key): SAC: a = tanh(u), u ~ the
  mixture (`Agent.sample_action`); DDPG: clip(mu(s) + N(0, expl_noise^2), -1, 1), the
  member's own exploration noise (`DDPGAgent.explore`).
Actions come back as numpy arrays of the action space's dtype: [act_dim] for one
observation, [n, act_dim] for a batch.
"""

from __future__ import annotations

import functools
import json
import os
import warnings

import jax
import numpy as np

from sac_jax import agent as agent_lib
from sac_jax import learners, rundir, settings

RUN_FILE = "run.json"  # experiments/run.py's RUN_FILE: the resolved flags of the run
# TrainState / DDPGState fields acting reads (hparams: DDPG's expl_noise; diverged_at: a
# warning for a member that diverged).
_ACTING_FIELDS = ("policy_params", "q_params", "hparams", "diverged_at")


def read_flags(run_dir: str) -> dict:
  """The resolved flags of a run (`<run_dir>/run.json`); ValueError if there are none."""
  path = os.path.join(run_dir, RUN_FILE)
  if not os.path.isfile(path):
    if not os.path.isdir(run_dir):
      raise ValueError(f"run_dir={run_dir!r} does not exist")
    points = sorted(d for d in os.listdir(run_dir)
                    if os.path.isfile(os.path.join(run_dir, d, RUN_FILE)))
    hint = (f"; it looks like an experiments.sweep directory, whose points are run "
            f"directories: {', '.join(points[:6])}{' ...' if len(points) > 6 else ''}"
            if points else "")
    raise ValueError(f"run_dir={run_dir!r} has no {RUN_FILE}: not a run directory of "
                     f"experiments.run{hint}")
  with open(path) as f:
    return json.load(f)


def config_from_flags(flags: dict):
  """The learner's config from a run's resolved flags: agent.SACConfig, or
  ddpg.DDPGConfig for `algorithm: ddpg` (`learners.config_from`, as experiments/run.py
  builds it; a field the run.json lacks, from an older run, keeps its default)."""
  algorithm = flags.get("algorithm", "sac")
  if algorithm not in settings.BY_NAME["algorithm"].choices:
    raise ValueError(f"algorithm={algorithm!r} in {RUN_FILE}: this version of sac_jax "
                     "loads 'sac' and 'ddpg' runs")
  return learners.config_from(flags)


def checkpoint_steps(run_dir: str) -> list[int]:
  """The env steps of the run's complete checkpoints, ascending ([] if none).

  Reads the directory only (orbax renames a checkpoint into place when it is complete, so
  an unfinished save is never listed); safe while the run is still training.
  """
  import orbax.checkpoint as ocp
  path = os.path.join(run_dir, rundir.CHECKPOINTS)
  if not os.path.isdir(path):
    return []
  return sorted(int(s) for s in ocp.utils.checkpoint_steps(os.path.abspath(path)))


def restore_acting_params(run_dir: str, step: int, fields=_ACTING_FIELDS,
                          optional=()) -> dict:
  """`fields` of the member-stacked training state at `step`, as numpy arrays ([M, ...]);
  those in `optional` are left out when the checkpoint lacks them (an older run's).

  A partial restore (orbax `PyTreeRestore(partial_restore=True)`): the template is the
  checkpoint's own metadata cut down to `train/<field>`, so nothing else is read.
  """
  import orbax.checkpoint as ocp
  from etils import epath
  path = epath.Path(os.path.abspath(os.path.join(run_dir, rundir.CHECKPOINTS, str(step),
                                                 "tree")))
  handler = ocp.PyTreeCheckpointHandler()
  try:
    meta = handler.metadata(path)
    train = getattr(meta, "tree", meta)["train"]
    missing = [f for f in fields if f not in train and f not in optional]
    if missing:
      raise ValueError(f"checkpoint {path} has no {', '.join(missing)} in its training "
                       f"state (it holds {', '.join(sorted(train))})")
    want = {"train": {f: train[f] for f in fields if f in train}}
    item = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), want)
    restore_args = jax.tree.map(lambda m: ocp.RestoreArgs(restore_type=np.ndarray), want)
    out = handler.restore(path, args=ocp.args.PyTreeRestore(
        item=item, restore_args=restore_args, partial_restore=True))
  finally:
    handler.close()
  return out["train"]


@functools.lru_cache(maxsize=16)
def _learner(config, obs_dim: int, act_dim: int):
  """(agent, its one-member state's shapes, jit(eval_action), jit(explore)), shared by
  every Policy of the same config (each member, each step): a batch shape compiles once."""
  agent = learners.make(config, obs_dim, act_dim)
  abstract = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
  blank = type(abstract)(*([None] * len(abstract)))  # only the acting fields filled in

  def explore(pp, qp, hp, obs, key):
    return agent.explore(blank._replace(policy_params=pp, q_params=qp, hparams=hp), obs,
                         key)
  return agent, abstract, jax.jit(agent.eval_action), jax.jit(explore)


class Policy:
  """One member's trained policy; see the module docstring. Call it: `policy(obs)` (or
  `policy(obs, key)` when stochastic) -> actions in the env's bounds; `unit` gives the
  agent's [-1, 1] actions, `to_env` maps those to the env's bounds.

  Attributes: run_dir, env_id, step (the checkpoint's env step), member, num_members,
  deterministic, algorithm ('sac' or 'ddpg'), config, agent, flags (run.json), obs_dim,
  act_dim, action_low, action_high, diverged_at (-1, or the env step the member froze at),
  params (this member's {'policy_params', 'q_params', 'hparams'}).
  """

  def __init__(self, run_dir: str, flags: dict, config, agent, step: int, member: int,
               num_members: int, deterministic: bool, params: dict, diverged_at: int,
               action_space):
    self.run_dir, self.flags, self.config, self.agent = run_dir, flags, config, agent
    self.env_id = flags["env_id"]
    self.algorithm = flags.get("algorithm", "sac")
    self.step, self.member, self.num_members = step, member, num_members
    self.deterministic = deterministic
    self.params, self.diverged_at = params, diverged_at
    self.obs_dim, self.act_dim = agent.obs_dim, agent.act_dim
    self.action_low = np.asarray(action_space.low)
    self.action_high = np.asarray(action_space.high)
    self._dtype = action_space.dtype
    from gymnasium.wrappers.utils import rescale_box
    # RescaleAction(env, -1, 1) acts through this function ([-1, 1] -> the env's bounds).
    with warnings.catch_warnings():  # float64 bounds cast to a float32 Box: harmless
      warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")
      _, _, self._rescale = rescale_box(action_space, -1.0, 1.0)
    _, _, self._eval, self._explore = _learner(config, self.obs_dim, self.act_dim)

  def _obs(self, obs) -> tuple[np.ndarray, bool]:
    obs = np.asarray(obs, np.float32)
    if obs.ndim not in (1, 2) or obs.shape[-1] != self.obs_dim:
      raise ValueError(f"observation of shape {obs.shape}: expected [{self.obs_dim}] or "
                       f"[n, {self.obs_dim}] for {self.env_id}")
    return (obs[None], True) if obs.ndim == 1 else (obs, False)

  def unit(self, obs, key=None) -> np.ndarray:
    """The agent's action in [-1, 1]^act_dim for `obs` ([obs_dim] or [n, obs_dim])."""
    batch, single = self._obs(obs)
    p = self.params
    if self.deterministic:
      if key is not None:
        raise ValueError("this policy is deterministic and takes no key; load it with "
                         "deterministic=False to sample actions")
      a = self._eval(p["policy_params"], p["q_params"], batch)
    else:
      if key is None:
        raise ValueError("a stochastic policy (deterministic=False) needs a PRNG key: "
                         "policy(obs, jax.random.PRNGKey(seed)) or policy(obs, seed)")
      if isinstance(key, (int, np.integer)):
        key = jax.random.PRNGKey(int(key))
      a = self._explore(p["policy_params"], p["q_params"], p["hparams"], batch, key)
    a = np.asarray(a, np.float32)
    return a[0] if single else a

  def to_env(self, unit_action) -> np.ndarray:
    """[-1, 1] actions -> the env's bounds (RescaleAction's map, clipped to the bounds)."""
    a = self._rescale(np.asarray(unit_action, np.float32))
    return np.clip(a, self.action_low, self.action_high).astype(self._dtype)

  def __call__(self, obs, key=None) -> np.ndarray:
    """The action for `obs` in the env's own bounds ([act_dim], or [n, act_dim])."""
    return self.to_env(self.unit(obs, key))

  def __repr__(self) -> str:
    kind = "deterministic" if self.deterministic else "stochastic"
    return (f"Policy({self.algorithm} {kind}, member {self.member} of {self.num_members}, "
            f"{self.env_id} at env step {self.step}, {self.run_dir!r})")


def load_policy(run_dir: str, member: int = 0, step: int | None = None,
                deterministic: bool = True) -> Policy:
  """One member's policy of a run directory, at checkpoint `step` (default: the latest).

  Works for every run `experiments.run` writes (SAC with any option: the paper's config,
  the value-free modern one, mixture_reparameterized, ...; and DDPG). Raises ValueError
  naming the run directory (no run.json, no checkpoint), the available steps (no
  checkpoint at `step`) or the member count (`member` out of range).
  """
  flags = read_flags(run_dir)
  config = config_from_flags(flags)
  steps = checkpoint_steps(run_dir)
  if not steps:
    raise ValueError(f"run_dir={run_dir!r} holds no checkpoint (no complete checkpoint "
                     f"under {os.path.join(run_dir, rundir.CHECKPOINTS)}); a run writes "
                     "one every --checkpoint_every env steps, at its end and on "
                     "SIGINT/SIGTERM")
  if step is None:
    step = steps[-1]
  elif isinstance(step, bool) or int(step) not in steps:
    raise ValueError(f"step={step!r}: {run_dir!r} has no checkpoint at that env step; "
                     f"available steps: {', '.join(map(str, steps))}")
  step = int(step)

  from sac_jax import envs
  env = envs.check_env_id(flags["env_id"])
  obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
  action_space = env.action_space
  env.close()
  agent, expected, _, _ = _learner(config, obs_dim, act_dim)

  # SAC's deterministic action needs Q (the component argmax); DDPG's does not.
  needs_q = isinstance(config, agent_lib.SACConfig)
  fields = [f for f in _ACTING_FIELDS if needs_q or f != "q_params"]
  # Checkpoints written before divergence tracking (or per-member hyperparameters in the
  # state) lack those; a SAC policy acts without them.
  optional = ("diverged_at",) + (("hparams",) if needs_q else ())
  stacked = restore_acting_params(run_dir, step, fields, optional)
  num_members = int(np.shape(jax.tree.leaves(stacked["policy_params"])[0])[0])
  if isinstance(member, bool) or not isinstance(member, (int, np.integer)) or not (
      0 <= member < num_members):
    raise ValueError(f"member={member!r} is out of range: {run_dir!r} has {num_members} "
                     f"member(s), 0 to {num_members - 1}")
  member = int(member)
  one = jax.tree.map(lambda x: x[member], stacked)

  # The checkpoint must hold the networks the rebuilt config describes.
  for f in ("policy_params", "q_params"):
    if f not in one:
      continue
    want = jax.tree.map(lambda x: x.shape, getattr(expected, f))
    got = jax.tree.map(lambda x: x.shape, one[f])
    if jax.tree.structure(want) != jax.tree.structure(got) or jax.tree.leaves(
        want) != jax.tree.leaves(got):
      raise ValueError(f"the checkpoint at step {step} of {run_dir!r} does not match the "
                       f"config rebuilt from its {RUN_FILE} ({f}: expected {want}, found "
                       f"{got})")
  defaults = agent.default_hparams(1)
  saved = one.get("hparams", {})
  hparams = type(defaults)(**{k: np.asarray(saved.get(k, getattr(defaults, k)[0]))
                              for k in defaults._fields})
  params = dict(policy_params=one["policy_params"], q_params=one.get("q_params"),
                hparams=hparams)
  diverged_at = int(one.get("diverged_at", -1))
  if diverged_at >= 0:
    warnings.warn(f"member {member} of {run_dir!r} diverged at env step {diverged_at}: "
                  "its params are the last finite ones, from before that step",
                  stacklevel=2)
  return Policy(run_dir, flags, config, agent, step, member, num_members, deterministic,
                params, diverged_at, action_space)
