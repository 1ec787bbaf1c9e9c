r"""Learning curves of stable-baselines-jax's SAC (sbx) under sac_jax's evaluation protocol.

    python -m experiments.peer_learning --env_id=HalfCheetah-v5 --seed=100 --num_seeds=5 \
        --total_env_steps=100000 --eval_every=5000 --eval_episodes=5 --run_dir=DIR

The peer of `experiments/flags/modern.flags` (SAC 2018b), with SBX_SETTINGS (shared with
experiments/bench.py's speed race): MlpPolicy, net_arch [256, 256], batch 256, tau 0.005,
gamma 0.99, lr 3e-4, ent_coef "auto" (start 1.0, target entropy -act_dim), train_freq 1,
gradient_steps 1, a replay buffer of total_env_steps, and learning_starts = our start_steps
(read from paper.flags and modern.flags: 1000). The training env is gymnasium's env with
actions rescaled to [-1, 1], as sac_jax's (a no-op on the MuJoCo locomotion tasks).

Seeds seed .. seed + num_seeds - 1 train one after another in this process (SAC(seed=s)
seeds the network, the replay sampling and the training env). Every `eval_every` env steps
(and at the end) the deterministic policy (`model.predict(obs, deterministic=True)`) plays
`eval_episodes` episodes on separate evaluation envs: sac_jax's `envs.EvalEnvs`, so the c-th
evaluation of seed s resets episode j with `envs.eval_seed(s, c, j)`, the very start states
sac_jax's member with seed s sees. Training advances between evaluations by
`model.learn(n, reset_num_timesteps=False)`, which continues the same episode and schedule.

Outputs in --run_dir: metrics.csv (one row per seed and evaluation, the columns of an
experiments.run metrics.csv that `experiments/claim_analysis.py: read_arm` reads: env_step,
member (seed - first seed), seed, eval_return (mean over episodes), eval_return_std/min/max,
eval_episodes, sps (training env steps per second since the last evaluation) and wall_time
(seconds since that seed started)), and run.json (the peer's versions and the settings).

Kill-safe, resumable at evaluation granularity: after every evaluation the seed's model
(the peer's whole learning state: networks, optimizer moments, temperature, replay buffer,
RNG keys, the global NumPy and Python RNG states its replay sampling draws from, and step
counters; not the training env) is written atomically to
run_dir/checkpoints/seed_<s>.pkl. Rerunning the same command skips the seeds whose rows in
metrics.csv are complete (one per evaluation, the last at total_env_steps; their checkpoints
are removed), and resumes an incomplete seed from its checkpoint: its rows up to the
checkpoint's env step are kept, later ones dropped, the evaluation counter restored (the
next evaluation sees the start states an uninterrupted run's would), and a fresh training env
begins a new episode (seeded by the seed and the env step: the interrupted episode is not
restored, the one difference from an uninterrupted run). An incomplete seed without a usable
checkpoint (none, a truncated file, or one that does not load: another version's) restarts
from scratch, and says so. Checkpoints are pickles: load only your own.

`--peer=random` swaps sbx for a uniform-random policy that learns nothing: it checks the
plumbing (tests, reproduce's smoke budget) without sbx installed; its returns mean nothing.

Bad input (unknown env, non-positive budgets, sbx missing, a run_dir of other settings) is
one line on stderr with exit status 2, before any training.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import os
import pickle
import random
import time
from typing import Any, Callable, NamedTuple, Protocol, Sequence

from absl import flags

import numpy as np

from experiments import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where sac_jax's start_steps come from: modern.flags is an overlay on the paper's settings.
OUR_FLAGFILES = ("experiments/flags/paper.flags", "experiments/flags/modern.flags")
PEERS = ("sbx", "random")
BATCH_SIZE = 256
INSTALL = "pip install -e '.[bench]' -c experiments/bench-constraints.txt"
COLUMNS = ("env_step", "member", "seed", "eval_return", "eval_return_std", "eval_return_min",
           "eval_return_max", "eval_episodes", "sps", "wall_time")


def flagfile_value(paths: Sequence[str], name: str) -> str | None:
  """The value the flagfiles `paths` (relative to the repository, read in order, nested
  --flagfile lines followed) give `--name`; the last one wins. None if none sets it."""
  value = None
  for path in paths:
    with open(os.path.join(REPO, path)) as f:
      for line in f:
        line = line.strip()
        if line.startswith("--flagfile="):
          nested = flagfile_value([line.split("=", 1)[1]], name)
          value = nested if nested is not None else value
        elif line.startswith(f"--{name}="):
          value = line.split("=", 1)[1]
  return value


def our_start_steps() -> int:
  value = flagfile_value(OUR_FLAGFILES, "start_steps")
  if value is None:
    raise ValueError(f"no --start_steps in {', '.join(OUR_FLAGFILES)}")
  return int(value)


@dataclasses.dataclass(frozen=True)
class PeerConfig:
  env_id: str
  seed: int
  num_seeds: int
  total_env_steps: int
  eval_every: int
  eval_episodes: int
  learning_starts: int
  peer: str = "sbx"

  def seeds(self) -> list[int]:
    return [self.seed + i for i in range(self.num_seeds)]

  def eval_steps(self) -> list[int]:
    """The env steps after which the policy is evaluated (as sac_jax's loop)."""
    steps = list(range(self.eval_every, self.total_env_steps + 1, self.eval_every))
    return steps if steps and steps[-1] == self.total_env_steps else (
        steps + [self.total_env_steps])


class Model(Protocol):
  """What `train` needs of a peer: stable-baselines' `learn` and `predict`."""

  def learn(self, total_timesteps: int, reset_num_timesteps: bool = True) -> Any: ...

  def predict(self, observation: np.ndarray, deterministic: bool = False
              ) -> tuple[np.ndarray, Any]: ...


# sbx.SAC's settings at modern.flags' values: the peer of the speed race (experiments/bench.py)
# and of the learning comparison; learning_starts and buffer_size are set per use.
SBX_SETTINGS = dict(batch_size=BATCH_SIZE, train_freq=1, gradient_steps=1, tau=0.005,
                    gamma=0.99, learning_rate=3e-4, ent_coef="auto",
                    policy_kwargs=dict(net_arch=[256, 256]))


def sbx_kwargs(cfg: PeerConfig) -> dict:
  """sbx.SAC's settings: SBX_SETTINGS, our start_steps, a buffer of the whole run."""
  return dict(SBX_SETTINGS, learning_starts=cfg.learning_starts,
              buffer_size=cfg.total_env_steps)


def pickle_state(model: Model) -> bytes:
  """A model's whole state as bytes (the default Peer.save: plain picklable models)."""
  return pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)


def unpickle_state(state: bytes, seed: int, env_step: int) -> Model:
  """The default Peer.load: the model `pickle_state` wrote."""
  return pickle.loads(state)


class Peer(NamedTuple):
  """How `train` builds, saves and restores a peer's model.

  make(seed): a fresh model; save(model): its learning state as bytes (the training env
  excluded); load(state, seed, env_step): the model again, with a fresh training env where it
  has one (seeded from seed and env_step).
  """
  make: Callable[[int], Model]
  save: Callable[[Model], bytes] = pickle_state
  load: Callable[[bytes, int, int], Model] = unpickle_state


def resume_env_seed(seed: int, env_step: int) -> int:
  """The seed of the training env a resumed model starts (a new episode) with."""
  return seed * 1_000_003 + env_step


def sbx_peer(cfg: PeerConfig) -> Peer:
  import cloudpickle   # a dependency of stable-baselines3: sbx's jitted closures pickle
  import gymnasium as gym
  from sbx import SAC
  from stable_baselines3.common.logger import Logger

  from sac_jax import envs

  def quiet(model: Model) -> Model:
    # stable-baselines' default logger makes an empty /tmp/SB3-<time> folder at every
    # learn() call (once per evaluation here); a logger without outputs makes none.
    model.set_logger(Logger(None, []))
    return model

  def make_env():
    # sac_jax's training env: actions rescaled to [-1, 1] (sac_jax.envs).
    envs.show_mujoco_warnings_once()
    return gym.wrappers.RescaleAction(gym.make(cfg.env_id), -1.0, 1.0)

  def make(seed: int) -> Model:
    return quiet(SAC("MlpPolicy", make_env(), seed=seed, verbose=0, **sbx_kwargs(cfg)))

  def save(model) -> bytes:
    env, model.env = model.env, None   # the env's MuJoCo state does not pickle; not kept
    try:
      # With the global RNGs stable-baselines seeds and draws from (its replay sampling
      # uses NumPy's global generator).
      return cloudpickle.dumps((model, np.random.get_state(), random.getstate()))
    finally:
      model.env = env

  def load(state: bytes, seed: int, env_step: int) -> Model:
    model, np_state, py_state = cloudpickle.loads(state)
    np.random.set_state(np_state)
    random.setstate(py_state)
    model.set_env(make_env())          # drops the last observation: learn() resets the env
    model.env.seed(resume_env_seed(seed, env_step))
    return quiet(model)
  return Peer(make, save, load)


class RandomPeer:
  """A uniform-random policy on [-1, 1]^d that learns nothing: plumbing tests only."""

  def __init__(self, act_dim: int, seed: int):
    self.act_dim = act_dim
    self.rng = np.random.default_rng(seed)

  def learn(self, total_timesteps: int, reset_num_timesteps: bool = True) -> "RandomPeer":
    return self

  def predict(self, observation, deterministic=False):
    shape = np.shape(observation)[:-1] + (self.act_dim,)
    return self.rng.uniform(-1.0, 1.0, shape).astype(np.float32), None


def random_peer(cfg: PeerConfig) -> Peer:
  from sac_jax import envs
  act_dim = envs.env_dims(cfg.env_id)[1]
  return Peer(lambda seed: RandomPeer(act_dim, seed))


def peer_versions(peer: str) -> dict:
  if peer == "random":
    return dict(impl="uniform-random policy (plumbing tests only)")
  import jax
  import sbx
  import stable_baselines3
  return dict(impl=f"stable-baselines-jax {sbx.__version__}", sbx=sbx.__version__,
              stable_baselines3=stable_baselines3.__version__, jax=jax.__version__)


# ---------------------------------------------------------------- metrics.csv
def read_rows(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def write_rows(path: str, rows: Sequence[dict]) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    w = csv.DictWriter(f, COLUMNS)
    w.writeheader()
    w.writerows(rows)
  os.replace(tmp, path)


def append_row(path: str, row: dict) -> None:
  new = not os.path.exists(path)
  with open(path, "a", newline="") as f:
    w = csv.DictWriter(f, COLUMNS)
    if new:
      w.writeheader()
    w.writerow(row)


def complete_seeds(rows: Sequence[dict], cfg: PeerConfig) -> set[int]:
  """Seeds whose rows are exactly one per evaluation, in order, the last at the end."""
  steps: dict[int, list[int]] = {}
  for r in rows:
    steps.setdefault(int(r["seed"]), []).append(int(r["env_step"]))
  want = cfg.eval_steps()
  return {s for s in cfg.seeds() if steps.get(s) == want}


def checkpoint_path(run_dir: str, seed: int) -> str:
  return os.path.join(run_dir, "checkpoints", f"seed_{seed}.pkl")


def write_checkpoint(run_dir: str, seed: int, ckpt: dict) -> None:
  """Atomically (a crash leaves the previous checkpoint or the new one, never half)."""
  path = checkpoint_path(run_dir, seed)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "wb") as f:
    pickle.dump(ckpt, f, protocol=pickle.HIGHEST_PROTOCOL)
    f.flush()
    os.fsync(f.fileno())
  os.replace(path + ".tmp", path)


def read_checkpoint(run_dir: str, seed: int, cfg: PeerConfig,
                    steps_done: Sequence[int]) -> dict | None:
  """The seed's checkpoint if it can resume a run: the seed's, at one of the evaluation
  steps, with the evaluation rows up to it all in metrics.csv (`steps_done`, in order)."""
  path = checkpoint_path(run_dir, seed)
  if not os.path.exists(path):
    return None
  try:
    with open(path, "rb") as f:
      ckpt = pickle.load(f)
  except Exception:   # a truncated or foreign file: the seed restarts from scratch
    return None
  want = cfg.eval_steps()
  if (not isinstance(ckpt, dict) or ckpt.get("seed") != seed
      or ckpt.get("env_step") not in want):
    return None
  k = want.index(ckpt["env_step"]) + 1
  if ckpt.get("evals") != k or list(steps_done[:k]) != want[:k]:
    return None
  return ckpt


def train(peer: Peer, cfg: PeerConfig, run_dir: str,
          log: Callable[[str], None] = print) -> list[int]:
  """Trains and evaluates every seed not complete in run_dir/metrics.csv: an incomplete
  seed resumes from its checkpoint (its rows after the checkpoint's env step dropped), or
  restarts from scratch without one (its rows dropped); returns the seeds trained."""
  from sac_jax import envs
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, "metrics.csv")
  rows = read_rows(path)
  done = complete_seeds(rows, cfg)
  for s in done:   # a complete seed's checkpoint is never read again
    if os.path.exists(checkpoint_path(run_dir, s)):
      os.remove(checkpoint_path(run_dir, s))
  todo = [s for s in cfg.seeds() if s not in done]
  resume: dict[int, dict] = {}
  for s in todo:
    steps_done = [int(r["env_step"]) for r in rows if int(r["seed"]) == s]
    ckpt = read_checkpoint(run_dir, s, cfg, steps_done)
    if ckpt is not None:
      resume[s] = ckpt
      log(f"[peer {cfg.peer}] seed {s} resumes from its checkpoint at env step "
          f"{ckpt['env_step']}")
    elif steps_done:
      log(f"[peer {cfg.peer}] seed {s} is incomplete and has no usable checkpoint: it "
          f"restarts from scratch")
  kept = [r for r in rows if int(r["seed"]) in done or (
      int(r["seed"]) in resume and int(r["env_step"]) <= resume[int(r["seed"])]["env_step"])]
  if len(kept) != len(rows):
    write_rows(path, kept)
  n = cfg.eval_episodes
  for s in todo:
    member = s - cfg.seed
    ckpt = resume.get(s)
    model = None
    if ckpt is not None:
      try:
        model = peer.load(ckpt["state"], s, ckpt["env_step"])
        trained, evals, wall0 = ckpt["env_step"], ckpt["evals"], ckpt["wall_time"]
      except Exception as e:   # another version's format: say so, start the seed again
        log(f"[peer {cfg.peer}] seed {s}: its checkpoint does not load ({e!r}): it "
            f"restarts from scratch")
        write_rows(path, [r for r in read_rows(path) if int(r["seed"]) != s])
    if model is None:
      model, trained, evals, wall0 = peer.make(s), 0, 0, 0.0
    eval_envs = envs.EvalEnvs(cfg.env_id, [s], n, calls=evals)

    def policy(obs, model=model):   # [1, n, obs_dim] -> [1, n, act_dim]
      action, _ = model.predict(obs.reshape(n, -1), deterministic=True)
      return np.asarray(action, np.float32).reshape(1, n, -1)

    t0 = time.perf_counter() - wall0
    try:
      for step in cfg.eval_steps():
        if step <= trained:
          continue
        t = time.perf_counter()
        model.learn(total_timesteps=step - trained, reset_num_timesteps=False)
        train_s = time.perf_counter() - t
        sps = (step - trained) / max(train_s, 1e-9)
        trained = step
        r = eval_envs.run(policy)[0]
        wall = round(time.perf_counter() - t0, 2)
        append_row(path, dict(
            env_step=step, member=member, seed=s, eval_return=float(r.mean()),
            eval_return_std=float(r.std()), eval_return_min=float(r.min()),
            eval_return_max=float(r.max()), eval_episodes=len(r), sps=round(sps, 2),
            wall_time=wall))
        if step < cfg.total_env_steps:   # the row first: a checkpoint never runs ahead
          write_checkpoint(run_dir, s, dict(seed=s, env_step=step, evals=eval_envs.calls,
                                            wall_time=wall, state=peer.save(model)))
        log(f"[peer {cfg.peer} {cfg.env_id}] seed {s} ({member + 1}/{cfg.num_seeds}) "
            f"env step {step}/{cfg.total_env_steps}: eval return {r.mean():.1f} "
            f"(sd {r.std():.1f}, {len(r)} episodes), {sps:.0f} steps/s")
    finally:
      eval_envs.close()
      env = getattr(model, "env", None)
      if env is not None:
        env.close()
    if os.path.exists(checkpoint_path(run_dir, s)):
      os.remove(checkpoint_path(run_dir, s))
  return todo


# ---------------------------------------------------------------- command line
def _sbx_installed() -> bool:
  return importlib.util.find_spec("sbx") is not None


def validate(cfg: PeerConfig, run_dir: str | None) -> str | None:
  """The one-line refusal of bad input, or None; builds nothing but one env."""
  for name in ("num_seeds", "total_env_steps", "eval_every", "eval_episodes"):
    if getattr(cfg, name) < 1:
      return f"--{name}={getattr(cfg, name)}: must be >= 1"
  if cfg.seed < 0:
    return f"--seed={cfg.seed}: must be >= 0"
  if cfg.learning_starts < 0:
    return f"--learning_starts={cfg.learning_starts}: must be >= 0"
  if cfg.total_env_steps < cfg.learning_starts:
    return (f"--total_env_steps={cfg.total_env_steps} is below --learning_starts="
            f"{cfg.learning_starts}: the peer would never leave the random-action phase")
  if cfg.peer == "sbx" and cfg.total_env_steps < BATCH_SIZE:
    return (f"--total_env_steps={cfg.total_env_steps}: the replay buffer (total_env_steps "
            f"transitions) must hold a batch of {BATCH_SIZE}")
  if not run_dir:
    return "--run_dir is required"
  if cfg.peer == "sbx" and not _sbx_installed():
    return f"--peer=sbx: stable-baselines-jax (sbx) is not installed: {INSTALL}"
  if not cfg.env_id:
    return "--env_id is required, e.g. --env_id=HalfCheetah-v5"
  from sac_jax import envs
  try:
    envs.check_env_id(cfg.env_id).close()
  except envs.EnvSpecError as e:
    return str(e)
  info = os.path.join(run_dir, "run.json")
  if os.path.exists(info):
    with open(info) as f:
      had = json.load(f).get("settings", {})
    now = dataclasses.asdict(cfg)
    diff = [k for k in now if had.get(k) != now[k]]
    if diff:
      return (f"--run_dir={run_dir} holds a run with other settings ("
              + ", ".join(f"{k}: {had.get(k)!r} there, {now[k]!r} here" for k in diff)
              + "): use another --run_dir")
  return None


def define_flags() -> None:
  """The command line's flags: defined when run as a program only, so that importing
  this module (tests, other entry points) registers no flag that could collide."""
  flags.DEFINE_string("env_id", None, "gymnasium env id, e.g. HalfCheetah-v5")
  flags.DEFINE_integer("seed", 0, "first seed: seeds seed .. seed + num_seeds - 1")
  flags.DEFINE_integer("num_seeds", 1, "seeds, trained one after another")
  flags.DEFINE_integer("total_env_steps", 100_000, "env steps per seed")
  flags.DEFINE_integer("eval_every", 5000, "env steps between deterministic evaluations "
                       "(and one at the end)")
  flags.DEFINE_integer("eval_episodes", 5, "episodes per evaluation")
  flags.DEFINE_integer("learning_starts", None, "uniformly random actions for this many env "
                       "steps before learning (default: sac_jax's start_steps in "
                       + " and ".join(os.path.basename(p) for p in OUR_FLAGFILES) + ")")
  flags.DEFINE_enum("peer", "sbx", PEERS, "sbx: stable-baselines-jax's SAC; random: a "
                    "uniform-random policy that learns nothing (plumbing tests only)")
  flags.DEFINE_string("run_dir", None, "output directory (metrics.csv, run.json)")


def main(argv):
  if len(argv) > 1:
    raise cli.UsageError(f"unexpected argument(s) {argv[1:]}")
  F = flags.FLAGS
  cfg = PeerConfig(env_id=F.env_id, seed=F.seed, num_seeds=F.num_seeds,
                   total_env_steps=F.total_env_steps, eval_every=F.eval_every,
                   eval_episodes=F.eval_episodes,
                   learning_starts=(our_start_steps() if F.learning_starts is None
                                    else F.learning_starts), peer=F.peer)
  refusal = validate(cfg, F.run_dir)
  if refusal:
    raise cli.UsageError(refusal)
  run_dir = F.run_dir
  os.makedirs(run_dir, exist_ok=True)
  if not os.path.exists(os.path.join(run_dir, "run.json")):
    info = dict(peer=cfg.peer, **peer_versions(cfg.peer), settings=dataclasses.asdict(cfg),
                sbx_kwargs=sbx_kwargs(cfg) if cfg.peer == "sbx" else None,
                protocol="deterministic policy, eval_episodes episodes every eval_every "
                         "env steps and at the end, on sac_jax.envs.EvalEnvs (episode j "
                         "of evaluation c of seed s reset with envs.eval_seed(s, c, j))")
    with open(os.path.join(run_dir, "run.json"), "w") as f:
      json.dump(info, f, indent=2)
      f.write("\n")
  done = complete_seeds(read_rows(os.path.join(run_dir, "metrics.csv")), cfg)
  if len(done) == cfg.num_seeds:
    print(f"[peer {cfg.peer} {cfg.env_id}] run in {run_dir} is complete ({cfg.num_seeds} "
          f"seeds x {cfg.total_env_steps} env steps); nothing to do", flush=True)
    return 0
  peer = sbx_peer(cfg) if cfg.peer == "sbx" else random_peer(cfg)
  print(f"[peer {cfg.peer} {cfg.env_id}] {len(done)} of {cfg.num_seeds} seeds complete; "
        f"training the others ({cfg.total_env_steps} env steps each) in {run_dir}",
        flush=True)
  train(peer, cfg, run_dir, log=lambda m: print(m, flush=True))
  print(f"[peer {cfg.peer} {cfg.env_id}] done: {os.path.join(run_dir, 'metrics.csv')}",
        flush=True)
  return 0


if __name__ == "__main__":
  define_flags()
  cli.run(main)
