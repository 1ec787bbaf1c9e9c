r"""Train SAC members on a gymnasium task: flags -> configs -> host loop.

    python -m experiments.run --flagfile=experiments/flags/quickstart.flags
    python -m experiments.run --flagfile=experiments/flags/hopper.flags --seed=10

`--flagfile` may be given several times and flagfiles may include others; later flags
override earlier ones. Outputs go to `--run_dir` (default runs/<env_id>-<timestamp>):
flags.txt (a flagfile reproducing the run), metrics.csv, curves.png, summary.json and
checkpoints/. Running the same command again with the same --run_dir resumes from the
latest checkpoint (training episodes in flight at the kill restart), or says the run is
complete. SIGINT/SIGTERM write a checkpoint and exit with status 128 + signal number.

Sweeps of per-member hyperparameters run in the same process and the same vmapped state:

    python -m experiments.run --env_id=Pendulum-v1 --sweep reward_scale=0.3,1,3,10 \
        --sweep alpha=0,1 --num_seeds=4

trains the 4 x 2 grid times 4 seeds = 32 members. Members are grid-major with seeds inner
(member = setting_index * num_seeds + seed_index) and member seeds are seed + seed_index,
so every setting sees the same seeds (common random numbers). Shape-changing settings (K,
G, hidden sizes, batch size) cannot share a state: see experiments/sweep.py.

Bad input (unknown env, bad values, unwritable run dir, ...) is reported as one line on
stderr with exit status 2 before any network or env is built.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
import warnings
from typing import Any

from absl import flags
from absl import logging

from experiments import cli

FLAGS = flags.FLAGS

# ---------------------------------------------------------------- flags
flags.DEFINE_string("env_id", "InvertedPendulum-v5", "gymnasium env id (continuous Box "
                    "actions, flat Box observations); 'module:Env-v0' imports module first")
flags.DEFINE_integer("seed", 0, "base seed: member i uses seed + i (networks, env, eval)")
flags.DEFINE_integer("num_seeds", 1, "members: independent runs trained together")
flags.DEFINE_integer("total_env_steps", 100_000, "env steps per member")
flags.DEFINE_integer("start_steps", 1000, "uniformly random actions for this many steps")
flags.DEFINE_integer("num_components", 4, "K: Gaussian mixture components of the policy")
flags.DEFINE_list("hidden_sizes", ["128", "128"], "hidden layer sizes of V, Q and policy")
flags.DEFINE_string("activation", "relu", "hidden activation")
flags.DEFINE_integer("batch_size", 128, "minibatch size")
flags.DEFINE_integer("buffer_size", 1_000_000, "replay capacity per member (transitions)")
flags.DEFINE_integer("grad_steps", 1, "G: gradient steps per env step")
flags.DEFINE_enum("algorithm", "sac", ["sac", "ddpg"], "sac: the paper's algorithm (and "
                  "its options); ddpg: the paper's baseline (Lillicrap et al.; give "
                  "experiments/flags/ddpg.flags for its settings). DDPG ignores SAC-only "
                  "settings and says so; contradictions are refused")
flags.DEFINE_float("lr", 3e-4, "Adam learning rate of all networks (and the temperature)")
flags.DEFINE_float("lr_policy", None, "learning rate of the policy / actor (default --lr)")
flags.DEFINE_float("lr_q", None, "learning rate of Q / the critic (default --lr)")
flags.DEFINE_float("expl_noise", 0.1, "DDPG only: std of the Gaussian exploration noise "
                   "on the [-1, 1] action")
flags.DEFINE_float("weight_decay", 1e-2, "DDPG only: L2 weight decay of the critic's "
                   "weight matrices")
flags.DEFINE_float("gamma", 0.99, "discount, in [0, 1)")
flags.DEFINE_float("tau", 0.01, "Polyak rate of the target V, in (0, 1]")
flags.DEFINE_float("reward_scale", 1.0, "reward scale c (the inverse temperature), > 0")
flags.DEFINE_float("alpha", 1.0, "temperature (initial value with --auto_alpha)")
flags.DEFINE_bool("auto_alpha", False, "learn the temperature toward --target_entropy")
flags.DEFINE_float("target_entropy", None, "target entropy for --auto_alpha "
                   "(default -act_dim)")
flags.DEFINE_enum("policy_gradient", "likelihood_ratio",
                  ["likelihood_ratio", "reparameterized", "mixture_reparameterized"],
                  "policy gradient (reparameterized needs K = 1; mixture_reparameterized: any K)")
flags.DEFINE_bool("value_network", True, "the paper's soft value network V with a target "
                  "copy; --novalue_network: the value-free critic of SAC 2018b (target Q "
                  "networks; needs a reparameterized policy gradient)")
flags.DEFINE_integer("num_q", 1, "Q networks: 1 (paper) or 2 (twin Q, min in the V target)")
flags.DEFINE_float("reg", 1e-3, "policy regularization of means and log stds")
flags.DEFINE_float("log_std_min", -5.0, "soft lower bound of the policy's log-stds (the "
                   "authors hard-clipped at -20, which float32 cannot represent)")
flags.DEFINE_float("log_std_max", 2.0, "soft upper bound of the policy's log-stds")
flags.DEFINE_integer("eval_every", 1000, "env steps between deterministic evaluations")
flags.DEFINE_integer("eval_episodes", 10, "episodes per evaluation and member")
flags.DEFINE_integer("checkpoint_every", 10_000, "env steps between checkpoints "
                     "(0: only at the end and on SIGINT/SIGTERM)")
flags.DEFINE_integer("max_to_keep", 2, "checkpoints kept")
flags.DEFINE_string("run_dir", None, "output directory (default runs/<env_id>-<timestamp>)")
flags.DEFINE_bool("overlap", False, "act with the current policy, then dispatch the G "
                  "updates and step the envs while the device runs them: the actions come "
                  "from parameters one update behind (off in the paper's flagfiles)")
flags.DEFINE_bool("async_envs", False, "step the members' envs in subprocesses "
                  "(gymnasium AsyncVectorEnv); worth it with many members")
flags.DEFINE_float("log_every_s", 5.0, "seconds between progress lines (0: quiet)")
flags.DEFINE_bool("tensorboard", False, "also write TensorBoard event files to "
                  "<run_dir>/tensorboard (per-member returns and training metrics, "
                  "per-setting means); needs tensorboardX: pip install 'sac_jax[tensorboard]'")
flags.DEFINE_multi_string("sweep", [], "NAME=V1,V2,...: train every value of a per-member "
                          "hyperparameter (reward_scale, alpha, tau, gamma, reg, lr, "
                          "lr_policy, lr_q, lr_v, lr_alpha) in one vmapped state; repeat "
                          "for a grid; members = grid x num_seeds, seeds shared by settings")
flags.DEFINE_integer("num_devices", 0, "devices the members are spread over (0: all "
                     "devices, 1: no sharding); must divide the member count")
flags.DEFINE_string("coordinator_address", None, "several processes (hosts): HOST:PORT of "
                    "process 0 for jax.distributed.initialize, or 'auto' on a cluster JAX "
                    "detects (SLURM, Open MPI, ...); every process runs the same command")
flags.DEFINE_integer("num_processes", None, "several processes: how many (with "
                     "--coordinator_address=HOST:PORT)")
flags.DEFINE_integer("process_id", None, "several processes: this one's index in "
                     "[0, num_processes) (with --coordinator_address=HOST:PORT)")

# Flags a resumed run may change; every other flag must match the run directory's.
# Settings only one algorithm reads. DDPG ignores SAC-only ones that a flagfile sets (and
# says so once), but refuses those whose value contradicts it (DDPG_CONTRADICTS); SAC
# refuses DDPG-only ones that are set.
SAC_ONLY = ("num_components", "policy_gradient", "num_q", "auto_alpha", "target_entropy",
            "alpha", "reg", "log_std_min", "log_std_max", "value_network")
DDPG_ONLY = ("expl_noise", "weight_decay")
DDPG_CONTRADICTS = dict(auto_alpha=(False, "DDPG has no temperature to learn"),
                        num_q=(1, "DDPG has one critic (twin critics would be TD3)"),
                        policy_gradient=("likelihood_ratio", "DDPG's actor is "
                                         "deterministic and follows dQ/da"))
RESUMABLE = ("total_env_steps", "checkpoint_every", "max_to_keep", "run_dir", "async_envs",
             "overlap", "log_every_s", "num_devices", "coordinator_address", "num_processes",
             "process_id", "tensorboard")
# Flags that change array shapes or the graph (named as such in the refusal).
SHAPE_CHANGING = ("env_id", "num_seeds", "num_components", "hidden_sizes", "activation",
                  "batch_size", "buffer_size", "grad_steps", "policy_gradient", "num_q",
                  "auto_alpha", "log_std_min", "log_std_max", "algorithm",
                  "value_network")
RUN_FILE = "run.json"
FLAGS_FILE = "flags.txt"


UsageError = cli.UsageError  # bad input: one line, exit status 2


def our_flags() -> list[str]:
  return [f.name for f in FLAGS.get_flags_for_module(sys.modules[__name__])]


def flag_values() -> dict[str, Any]:
  return {name: FLAGS[name].value for name in our_flags()}


# ---------------------------------------------------------------- flags -> configs
def _hidden_sizes(raw) -> tuple[int, ...]:
  try:
    sizes = tuple(int(h) for h in raw)
  except ValueError:
    sizes = ()
  if not sizes or any(h < 1 for h in sizes):
    raise UsageError(f"hidden_sizes={','.join(raw)!r}: must be comma-separated positive "
                     "integers, e.g. 128,128")
  return sizes


def sac_config_from(v: dict):
  """The learner's config: agent.SACConfig, or ddpg.DDPGConfig with --algorithm=ddpg."""
  if v.get("algorithm", "sac") == "ddpg":
    from sac_jax import ddpg  # imports jax; after the cheap checks
    lr = v["lr"]
    return ddpg.DDPGConfig(
        hidden_sizes=_hidden_sizes(v["hidden_sizes"]), activation=v["activation"],
        batch_size=v["batch_size"], buffer_size=v["buffer_size"],
        grad_steps=v["grad_steps"], start_steps=v["start_steps"],
        lr_policy=lr if v.get("lr_policy") is None else v["lr_policy"],
        lr_q=lr if v.get("lr_q") is None else v["lr_q"], gamma=v["gamma"], tau=v["tau"],
        reward_scale=v["reward_scale"], expl_noise=v["expl_noise"],
        weight_decay=v["weight_decay"])
  from sac_jax import agent  # imports jax; after the cheap checks
  return agent.SACConfig(
      lr_policy=v.get("lr_policy"), lr_q=v.get("lr_q"),
      num_components=v["num_components"], hidden_sizes=_hidden_sizes(v["hidden_sizes"]),
      activation=v["activation"], batch_size=v["batch_size"],
      buffer_size=v["buffer_size"], grad_steps=v["grad_steps"],
      start_steps=v["start_steps"], policy_gradient=v["policy_gradient"],
      num_q=v["num_q"], auto_alpha=v["auto_alpha"], value_network=v["value_network"],
      target_entropy=v["target_entropy"],
      lr=v["lr"], gamma=v["gamma"], tau=v["tau"], reward_scale=v["reward_scale"],
      alpha=v["alpha"], reg=v["reg"], log_std_min=v["log_std_min"],
      log_std_max=v["log_std_max"])


# --sweep names: HParams fields, plus `lr` for all the learning rates at once.
LEARNING_RATES = ("lr_policy", "lr_q", "lr_v", "lr_alpha")
SWEEPABLE = ("reward_scale", "alpha", "tau", "gamma", "reg", "lr") + LEARNING_RATES
DDPG_LEARNING_RATES = ("lr_policy", "lr_q")
DDPG_SWEEPABLE = ("reward_scale", "tau", "gamma", "expl_noise", "weight_decay", "lr",
                  "lr_policy", "lr_q")


def _sweepable(algorithm: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(per-member names, the learning rates `lr` stands for) of an algorithm."""
  if algorithm == "ddpg":
    return DDPG_SWEEPABLE, DDPG_LEARNING_RATES
  return SWEEPABLE, LEARNING_RATES
# Names a user may try that change shapes or the graph: pointed to experiments.sweep.
SHAPE_ALIASES = {"K": "num_components", "G": "grad_steps", "hidden": "hidden_sizes"}


def parse_sweeps(specs, algorithm: str = "sac") -> list[tuple[str, list[float]]]:
  """`--sweep` values -> [(name, values)] in the order given. Raises UsageError."""
  SWEEPABLE, LEARNING_RATES = _sweepable(algorithm)
  out: list[tuple[str, list[float]]] = []
  for spec in specs:
    name, eq, raw = spec.partition("=")
    name = name.strip()
    if not eq or not name:
      raise UsageError(f"--sweep {spec!r}: expected NAME=V1,V2,... e.g. "
                       "--sweep reward_scale=1,3,10")
    if algorithm == "ddpg" and name in SAC_ONLY + ("lr_v", "lr_alpha"):
      raise UsageError(f"--sweep {name}: {name} is a SAC setting and --algorithm=ddpg "
                       "ignores it, so sweeping it would train identical members "
                       "(DDPG's per-member names: " + ", ".join(SWEEPABLE) + ")")
    if name not in SWEEPABLE:
      shaped = SHAPE_ALIASES.get(name, name)
      if shaped in SHAPE_CHANGING or shaped in ("start_steps", "target_entropy"):
        raise UsageError(
            f"--sweep {name}: {shaped} is fixed per process (it changes array shapes or "
            "the graph), so it cannot vary inside one vmapped state; run it as separate "
            f"runs with: python -m experiments.sweep --grid {shaped}=V1,V2,... "
            "(per-member names: " + ", ".join(SWEEPABLE) + ")")
      raise UsageError(f"--sweep {name}: unknown hyperparameter; per-member names are "
                       + ", ".join(SWEEPABLE))
    items = [x.strip() for x in raw.split(",")]
    if not raw.strip() or any(not x for x in items):
      raise UsageError(f"--sweep {spec!r}: empty value list; give one or more values, "
                       f"e.g. --sweep {name}=1,3,10")
    values = []
    for x in items:
      try:
        values.append(float(x))
      except ValueError:
        raise UsageError(f"--sweep {name}: cannot parse {x!r} as a number") from None
    if len(set(values)) != len(values):
      raise UsageError(f"--sweep {name}={raw}: a value is repeated")
    covers = set(LEARNING_RATES) if name == "lr" else {name}
    for prev, _ in out:
      prev_covers = set(LEARNING_RATES) if prev == "lr" else {prev}
      if covers & prev_covers:
        raise UsageError(f"--sweep {name} overlaps --sweep {prev} (lr means all of "
                         f"{', '.join(LEARNING_RATES)}); sweep each name once")
    out.append((name, values))
  return out


def _fmt_value(x: float) -> str:
  return f"{x:g}"


def member_hparams(v: dict, sac_config):
  """The per-member hyperparameters [M], per-member CSV columns and member seeds.

  This is the one place members are defined. Without --sweep: M = num_seeds members
  sharing the flags' values (columns None, seeds None: seed + i). With --sweep: the grid
  of the swept values (first --sweep outermost) times num_seeds, grid-major with seeds
  inner; member seeds are seed + seed_index, shared by all settings (common random
  numbers); columns `setting` (e.g. "reward_scale=3,alpha=0"), `setting_index` and
  `seed_index` per member.
  """
  import itertools
  from sac_jax import agent
  s = v["num_seeds"]
  algorithm = v.get("algorithm", "sac")
  _, LEARNING_RATES = _sweepable(algorithm)
  sweeps = parse_sweeps(v.get("sweep") or [], algorithm)
  learner = agent.make_agent(sac_config, 1, 1)  # builds no arrays; for its hparams rules
  base = learner.default_hparams(1)
  base = type(base)(*(x[0] for x in base))
  if not sweeps:
    hp = base.stack(s)
    learner.validate_hparams(hp)
    return hp, None, None
  for (n, vals) in sweeps:  # name the sweep in the refusal of a bad value
    one = base.stack(len(vals), **{f: vals for f in (LEARNING_RATES if n == "lr" else (n,))})
    try:
      learner.validate_hparams(one)
    except ValueError as e:
      raise ValueError(f"--sweep {n}: {e}") from None
  grid = list(itertools.product(*(vals for _, vals in sweeps)))
  m = len(grid) * s
  overrides: dict[str, list[float]] = {}
  columns, seeds = [], []
  for g, point in enumerate(grid):
    label = ",".join(f"{n}={_fmt_value(x)}" for (n, _), x in zip(sweeps, point))
    for k in range(s):
      columns.append(dict(setting=label, setting_index=g, seed_index=k))
      seeds.append(v["seed"] + k)
      for (n, _), x in zip(sweeps, point):
        for field in (LEARNING_RATES if n == "lr" else (n,)):
          overrides.setdefault(field, []).append(x)
  hp = base.stack(m, **overrides)
  learner.validate_hparams(hp)
  return hp, tuple(columns), tuple(seeds)


def num_members(v: dict) -> int:
  """Members of the run: the sweep grid's size times num_seeds."""
  n = v["num_seeds"]
  for _, vals in parse_sweeps(v.get("sweep") or [], v.get("algorithm", "sac")):
    n *= len(vals)
  return n


def default_run_dir(env_id: str) -> str:
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return os.path.join("runs", re.sub(r"[^A-Za-z0-9_.-]+", "_", env_id) + "-" + stamp)


def validate(v: dict):
  """All checks, cheapest first; returns (sac_config, hparams, loop_config). No compute."""
  def need(ok, msg):
    if not ok:
      raise UsageError(msg)
  need(v["num_seeds"] >= 1, f"num_seeds={v['num_seeds']}: must be >= 1")
  need(v["total_env_steps"] >= 1, f"total_env_steps={v['total_env_steps']}: must be >= 1")
  need(v["start_steps"] >= 0, f"start_steps={v['start_steps']}: must be >= 0")
  need(v["total_env_steps"] >= v["start_steps"],
       f"total_env_steps={v['total_env_steps']} is below start_steps={v['start_steps']}: "
       "the run would never leave the random-action phase")
  need(v["num_components"] >= 1, f"num_components={v['num_components']}: K must be >= 1")
  need(0 <= v["gamma"] < 1, f"gamma={v['gamma']:g}: must be in [0, 1)")
  need(v["lr"] > 0, f"lr={v['lr']:g}: the learning rate must be > 0")
  need(v["batch_size"] >= 1, f"batch_size={v['batch_size']}: must be >= 1")
  need(v["buffer_size"] >= 1, f"buffer_size={v['buffer_size']}: must be >= 1")
  need(v["batch_size"] <= v["buffer_size"],
       f"batch_size={v['batch_size']} is larger than buffer_size={v['buffer_size']}: "
       "the batch must fit in the replay buffer")
  need(v["eval_every"] >= 1, f"eval_every={v['eval_every']}: must be >= 1")
  need(v["eval_episodes"] >= 1, f"eval_episodes={v['eval_episodes']}: must be >= 1")
  need(v["checkpoint_every"] >= 0,
       f"checkpoint_every={v['checkpoint_every']}: must be >= 0 (0: only at the end)")
  need(v["max_to_keep"] >= 1, f"max_to_keep={v['max_to_keep']}: must be >= 1")
  need(v["num_devices"] >= 0, f"num_devices={v['num_devices']}: must be >= 0 (0: all)")
  _hidden_sizes(v["hidden_sizes"])
  check_algorithm_flags(v)
  parse_sweeps(v.get("sweep") or [], v.get("algorithm", "sac"))
  from sac_jax import parallel  # imports jax; initializes nothing
  try:
    parallel.check_distributed_flags(v["coordinator_address"], v["num_processes"],
                                     v["process_id"])
  except ValueError as e:
    raise UsageError(str(e)) from None

  from sac_jax import envs, loop  # jax and gymnasium imports; still no compute
  try:  # SACConfig's and HParams' own checks raise ValueError naming the value
    sac_config = sac_config_from(v)
    hparams, member_columns, member_seeds = member_hparams(v, sac_config)
    envs.check_env_id(v["env_id"]).close()
  except ValueError as e:
    raise UsageError(str(e)) from None
  lc = loop.LoopConfig(
      env_id=v["env_id"], num_members=num_members(v), seed=v["seed"],
      total_env_steps=v["total_env_steps"], eval_every=v["eval_every"],
      eval_episodes=v["eval_episodes"], async_envs=v["async_envs"], overlap=v["overlap"],
      run_dir=v["run_dir"],
      checkpoint_every=v["checkpoint_every"], max_to_keep=v["max_to_keep"],
      log_every_s=v["log_every_s"],
      title=_title(v),
      member_columns=member_columns, member_seeds=member_seeds,
      num_devices=v["num_devices"])
  return sac_config, hparams, lc


def _show(x) -> str:
  return ",".join(map(str, x)) if isinstance(x, (list, tuple)) else str(x)


def _present(name: str) -> bool:
  """Whether the flag was given (on the command line or in a flagfile)."""
  return name in FLAGS and FLAGS[name].present > 0


def check_algorithm_flags(v: dict) -> list[str]:
  """Refuses settings that contradict --algorithm; returns the SAC-only flags that a DDPG
  run was given and ignores (for a one-time note)."""
  algorithm = v.get("algorithm", "sac")
  if algorithm == "sac":
    for name in DDPG_ONLY:  # at its default it changes nothing (flags.txt holds them all)
      if _present(name) and v[name] != FLAGS[name].default:
        raise UsageError(f"--{name} applies to --algorithm=ddpg only; this run is SAC "
                         "(drop the flag, or add --algorithm=ddpg)")
    return []
  for name, (ok, why) in DDPG_CONTRADICTS.items():
    if v[name] != ok:
      raise UsageError(f"--algorithm=ddpg contradicts --{name}={v[name]}: {why} (drop "
                       f"--{name}, or the flagfile that sets it)")
  return [n for n in SAC_ONLY if _present(n)]


def check_devices(v: dict, lc) -> list:
  """The devices the members go on (after jax.distributed.initialize, which must come
  first); UsageError if they do not fit."""
  from sac_jax import loop
  try:
    return loop.devices_for(lc)
  except ValueError as e:
    raise UsageError(f"--num_devices={v['num_devices']}: {e}") from None


def _title(v: dict) -> str:
  base = os.path.basename(os.path.normpath(v["run_dir"]))
  return base if v["env_id"] in base else f"{v['env_id']} ({base})"


# ---------------------------------------------------------------- run directory
def flagfile_text(v: dict) -> str:
  lines = ["# Reproduces this run: python -m experiments.run --flagfile=<this file>"]
  for name in our_flags():
    if v[name] is None or v[name] == []:
      continue  # left at its default (None, no --sweep)
    lines.append(FLAGS[name].serialize())
  return "\n".join(lines) + "\n"


def _jsonable(v: dict) -> dict:
  return {k: (list(x) if isinstance(x, (list, tuple)) else x) for k, x in v.items()}


def prepare_run_dir(v: dict) -> dict | None:
  """Checks the run dir is writable and, if it holds a run, that the flags match.

  Returns the saved flag values of an existing run (None for a new one).
  """
  from sac_jax import rundir
  run_dir = v["run_dir"]
  try:
    rundir.check_writable(run_dir)
  except OSError as e:
    raise UsageError(f"run_dir={run_dir!r} is not writable: {e.strerror or e}") from None
  path = os.path.join(run_dir, RUN_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    saved = json.load(f)
  now = _jsonable(v)
  diffs = [k for k in sorted(set(saved) | set(now))
           if k not in RESUMABLE and saved.get(k) != now.get(k)]
  if diffs:
    shape = [k for k in diffs if k in SHAPE_CHANGING]
    what = ", ".join(f"{k}={saved.get(k)!r} in the run vs {now.get(k)!r} now" for k in diffs)
    kind = (f"shape-changing flag(s) {', '.join(shape)} differ" if shape
            else "flags differ")
    raise UsageError(
        f"cannot resume {run_dir}: {kind} ({what}); rerun with "
        f"--flagfile={os.path.join(run_dir, FLAGS_FILE)} to resume it, or choose a new "
        "--run_dir")
  return saved


def write_run_files(v: dict) -> None:
  from sac_jax import rundir
  rundir.atomic_write(os.path.join(v["run_dir"], FLAGS_FILE), flagfile_text(v))
  rundir.write_json(os.path.join(v["run_dir"], RUN_FILE), _jsonable(v))


# ---------------------------------------------------------------- main
def main(argv):
  logging.set_verbosity(logging.WARNING)  # progress lines go to stdout; keep stderr quiet
  # gymnasium warns when a float64 Box is cast to float32 (Pendulum): harmless noise.
  warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")
  if len(argv) > 1:
    raise UsageError(f"unexpected argument(s) {argv[1:]!r}; flags look like --name=value")
  v = flag_values()
  if v["run_dir"] is None:
    if v["coordinator_address"]:
      raise UsageError("--coordinator_address given without --run_dir: every process "
                       "must write to the same run directory (on a filesystem they all "
                       "see), so name it")
    v["run_dir"] = default_run_dir(v["env_id"])
    FLAGS.run_dir = v["run_dir"]
  sac_config, hparams, lc = validate(v)
  ignored = check_algorithm_flags(v)

  import jax
  from sac_jax import loop, parallel, recorders
  parallel.initialize_distributed(v["coordinator_address"], v["num_processes"],
                                  v["process_id"])
  devices = check_devices(v, lc)
  primary = jax.process_index() == 0
  prepare_run_dir(v)
  done = recorders.completed_steps(v["run_dir"])
  # Every process has read the run directory before process 0 writes to it.
  parallel.barrier("sac_jax.run.prepared")
  if done >= v["total_env_steps"]:
    s = recorders.finalize(sac_config, lc) or {}
    if primary:
      print(f"[{v['env_id']}] run in {v['run_dir']} is complete ({done} env steps per "
            f"member; final return mean {recorders._num(s.get('final_return_mean'))}); "
            "nothing to "
            f"do. Curves: {os.path.join(v['run_dir'], 'curves.png')}", flush=True)
    return 0
  if primary:
    write_run_files(v)
  grid = f" ({lc.num_members // v['num_seeds']} settings x {v['num_seeds']} seeds)" \
      if lc.member_columns else ""
  where = (f" on {jax.process_count()} processes and {len(devices)} devices"
           if jax.process_count() > 1 else "")
  if primary:
    print(f"[{v['env_id']}] {'resuming' if done else 'starting'} {lc.num_members} "
          f"member(s){grid}{where}, {v['total_env_steps']} env steps each, in "
          f"{v['run_dir']} (curves: {os.path.join(v['run_dir'], 'curves.png')})",
          flush=True)
    if ignored:
      print(f"[{v['env_id']}] --algorithm=ddpg ignores the SAC-only setting(s) "
            + ", ".join(f"--{n}={_show(v[n])}" for n in ignored)
            + " (given by a flag or flagfile)", flush=True)
  # The run directory (files, checkpoints, signals) and the progress line, from the flags.
  recs = recorders.defaults(lc)
  if v["tensorboard"]:
    from sac_jax import tensorboard
    recs.append(tensorboard.TensorBoard(os.path.join(v["run_dir"], "tensorboard")))
  try:
    loop.train(sac_config, lc, hparams, recorders=recs)
  except loop.Interrupted as e:
    print(f"[{v['env_id']}] interrupted by {e.args[0]}: checkpoint written; rerun the same "
          "command to resume", file=sys.stderr, flush=True)
    return 128 + e.signum
  return 0


if __name__ == "__main__":
  cli.run(main)
