r"""Train SAC members on a gymnasium task: flags -> configs -> host loop.

    python -m experiments.run --flagfile=experiments/flags/quickstart.flags
    python -m experiments.run --flagfile=experiments/flags/hopper.flags --seed=10

`--flagfile` may be given several times and flagfiles may include others; later flags
override earlier ones. Outputs go to `--run_dir` (default runs/<env_id>-<timestamp>):
flags.txt (a flagfile reproducing the run), metrics.csv, curves.png, summary.json and
checkpoints/. Running the same command again with the same --run_dir resumes from the
latest checkpoint (training episodes in flight at the kill restart), or says the run is
complete. SIGINT/SIGTERM write a checkpoint and exit with status 128 + signal number.

A branch is a new run that starts from another run's checkpoint with some settings
changed (a one-factor experiment from a shared state: another squash term, a learned
temperature, another learning rate, from the same pre-collapse state):

    python -m experiments.run --flagfile=RUN/flags.txt --run_dir=RUN-capped \
        --branch_from=RUN --branch_step=1200000 --squash_correction=capped

Its metrics.csv starts with the source's rows up to that step; the settings that define
the saved state (env, seeds, --sweep, network shapes, replay size) must equal the source's.

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
from sac_jax import settings  # pure Python: no jax, no absl

FLAGS = flags.FLAGS

# ---------------------------------------------------------------- flags
# One flag per setting of sac_jax.settings (name, default and help declared there).
_DEFINE = dict(int=flags.DEFINE_integer, float=flags.DEFINE_float, bool=flags.DEFINE_bool,
               str=flags.DEFINE_string, ints=flags.DEFINE_list)


def define_flag(s: settings.Setting) -> None:
  if s.kind == "enum":
    flags.DEFINE_enum(s.name, s.default, list(s.choices), s.help)
  elif s.kind == "ints":  # absl lists hold strings: ['128', '128'], as run.json does
    flags.DEFINE_list(s.name, [str(x) for x in s.default], s.help)
  else:
    _DEFINE[s.kind](s.name, s.default, s.help)


for _setting in settings.SETTINGS:
  if _setting.flag:
    define_flag(_setting)
  if _setting.name == "tensorboard":  # --sweep (the CLI's own) keeps its flags.txt line
    flags.DEFINE_multi_string(
        "sweep", [], "NAME=V1,V2,...: train every value of a per-member hyperparameter ("
        + ", ".join(settings.per_member("sac")) + ") in one vmapped state; repeat for a "
        "grid; members = grid x num_seeds, seeds shared by settings")
del _setting

RUN_FILE = "run.json"
FLAGS_FILE = "flags.txt"


UsageError = cli.UsageError  # bad input: one line, exit status 2


def our_flags() -> list[str]:
  return [f.name for f in FLAGS.get_flags_for_module(sys.modules[__name__])]


def flag_values() -> dict[str, Any]:
  return {name: FLAGS[name].value for name in our_flags()}


# ---------------------------------------------------------------- --sweep
# Names a user may try that change shapes or the graph: pointed to experiments.sweep.
SHAPE_ALIASES = {"K": "num_components", "G": "grad_steps", "hidden": "hidden_sizes"}


def _covers(name: str, algorithm: str) -> tuple[str, ...]:
  """The HParams fields a --sweep name sets: `lr` sets every learning rate."""
  return settings.learning_rates(algorithm) if name == "lr" else (name,)


def parse_sweeps(specs, algorithm: str = "sac") -> list[tuple[str, list[float]]]:
  """`--sweep` values -> [(name, values)] in the order given. Raises UsageError."""
  sweepable = settings.per_member(algorithm)
  out: list[tuple[str, list[float]]] = []
  for spec in specs:
    name, eq, raw = spec.partition("=")
    name = name.strip()
    if not eq or not name:
      raise UsageError(f"--sweep {spec!r}: expected NAME=V1,V2,... e.g. "
                       "--sweep reward_scale=1,3,10")
    if algorithm == "ddpg" and name in settings.SAC_ONLY:
      raise UsageError(f"--sweep {name}: {name} is a SAC setting and --algorithm=ddpg "
                       "ignores it, so sweeping it would train identical members "
                       "(DDPG's per-member names: " + ", ".join(sweepable) + ")")
    if name not in sweepable:
      shaped = SHAPE_ALIASES.get(name, name)
      if shaped in settings.fixed_per_process():
        raise UsageError(
            f"--sweep {name}: {shaped} is fixed per process (it changes array shapes or "
            "the graph), so it cannot vary inside one vmapped state; run it as separate "
            f"runs with: python -m experiments.sweep --grid {shaped}=V1,V2,... "
            "(per-member names: " + ", ".join(sweepable) + ")")
      raise UsageError(f"--sweep {name}: unknown hyperparameter; per-member names are "
                       + ", ".join(sweepable))
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
    for prev, _ in out:
      if set(_covers(name, algorithm)) & set(_covers(prev, algorithm)):
        raise UsageError(f"--sweep {name} overlaps --sweep {prev} (lr means all of "
                         f"{', '.join(settings.learning_rates(algorithm))}); sweep each "
                         "name once")
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
  from sac_jax import learners
  s = v["num_seeds"]
  algorithm = v.get("algorithm", "sac")
  sweeps = parse_sweeps(v.get("sweep") or [], algorithm)
  learner = learners.make(sac_config, 1, 1)  # builds no arrays; for its hparams rules
  base = learner.default_hparams(1)
  base = type(base)(*(x[0] for x in base))
  if not sweeps:
    hp = base.stack(s)
    learner.validate_hparams(hp)
    return hp, None, None
  for (n, vals) in sweeps:  # name the sweep in the refusal of a bad value
    one = base.stack(len(vals), **{f: vals for f in _covers(n, algorithm)})
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
        for field in _covers(n, algorithm):
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
  """All checks, cheapest first; returns (learner config, hparams, loop_config). No compute.

  Every rule of a setting (and between settings) is the library's (sac_jax.settings);
  here its ValueError becomes the CLI's one-line UsageError.
  """
  try:
    settings.validate(v)
  except ValueError as e:
    raise UsageError(str(e)) from None
  parse_sweeps(v.get("sweep") or [], v.get("algorithm", "sac"))

  from sac_jax import envs, learners, loop  # jax and gymnasium imports; still no compute
  try:  # the configs' and HParams' own checks raise ValueError naming the value
    learner = learners.config_from(v)
    hparams, member_columns, member_seeds = member_hparams(v, learner)
    envs.check_env_id(v["env_id"]).close()
    lc = loop.LoopConfig(**settings.fields_from(loop.LoopConfig, v),
                         num_members=num_members(v),
                         title=_title(v), member_columns=member_columns,
                         member_seeds=member_seeds)
  except ValueError as e:
    raise UsageError(str(e)) from None
  return learner, hparams, lc


def _show(x) -> str:
  return ",".join(map(str, x)) if isinstance(x, (list, tuple)) else str(x)


def _present(name: str) -> bool:
  """Whether the flag was given (on the command line or in a flagfile)."""
  return name in FLAGS and FLAGS[name].present > 0


def ignored_flags(v: dict) -> list[str]:
  """The SAC-only flags a DDPG run was given and ignores (for a one-time note); the
  contradictions were refused by `validate`."""
  if v.get("algorithm", "sac") != "ddpg":
    return []
  return [n for n in settings.SAC_ONLY if _present(n)]


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
    # Results without the run.json that says what made them (another tool's, or a copy):
    # never write into them or read them as this run's.
    ckpts = os.path.join(run_dir, "checkpoints")
    found = [n for n in ("metrics.csv", "summary.json") if os.path.exists(
        os.path.join(run_dir, n))] + (["checkpoints/"] if os.path.isdir(ckpts)
                                      and os.listdir(ckpts) else [])
    if found:
      raise UsageError(
          f"run_dir={run_dir!r} holds {', '.join(found)} but no {RUN_FILE}: not a run "
          "this command can resume or extend; choose a new --run_dir")
    return None
  with open(path) as f:
    saved = json.load(f)
  now = _jsonable(v)
  diffs = [k for k in sorted(set(saved) | set(now))
           if k not in settings.RESUMABLE and saved.get(k) != now.get(k)]
  if diffs:
    shape = [k for k in diffs if k in settings.SHAPE_CHANGING]
    what = ", ".join(f"{k}={saved.get(k)!r} in the run vs {now.get(k)!r} now" for k in diffs)
    kind = (f"shape-changing flag(s) {', '.join(shape)} differ" if shape
            else "flags differ")
    raise UsageError(
        f"cannot resume {run_dir}: {kind} ({what}); rerun with "
        f"--flagfile={os.path.join(run_dir, FLAGS_FILE)} to resume it, or choose a new "
        "--run_dir")
  return saved


def check_branch(v: dict) -> None:
  """For a branch that has not started yet: the source is a run of this command whose
  state-defining settings equal this run's and which holds a checkpoint at branch_step.
  Raises UsageError. Reads only the source's run.json and its checkpoint directory."""
  src, step = v["branch_from"], v["branch_step"]
  path = os.path.join(src, RUN_FILE)
  if not os.path.exists(path):
    raise UsageError(f"branch_from={src!r}: no {RUN_FILE} there; give the run_dir of a "
                     "run of experiments.run")
  with open(path) as f:
    saved = json.load(f)
  now = _jsonable(v)
  keep = tuple(k for k in settings.STATE_DEFINING
               if k not in settings.STATE_A_BRANCH_MAY_CHANGE) + ("sweep",)
  default = lambda k: [] if k == "sweep" else _jsonable(
      {k: settings.BY_NAME[k].default})[k]
  diffs = [k for k in keep if saved.get(k, default(k)) != now.get(k)]
  if diffs:
    what = ", ".join(f"{k}={saved.get(k, default(k))!r} in the source vs {now.get(k)!r} "
                     "now" for k in diffs)
    raise UsageError(
        f"cannot branch from {src}: state-defining setting(s) differ ({what}); a branch "
        "keeps the source's " + ", ".join(keep) + " and may change the others")
  ckpts = os.path.join(src, "checkpoints")
  steps = sorted(int(d) for d in (os.listdir(ckpts) if os.path.isdir(ckpts) else [])
                 if d.isdigit())
  if step not in steps:
    raise UsageError(f"branch_step={step}: {src} has no checkpoint at that env step; it "
                     "has " + (", ".join(map(str, steps)) or "none") +
                     " (a run keeps its newest --max_to_keep checkpoints, and with "
                     "--keep_every=N those at multiples of N)")


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
  ignored = ignored_flags(v)

  import jax
  from sac_jax import checkpoint, loop, parallel, recorders
  parallel.initialize_distributed(v["coordinator_address"], v["num_processes"],
                                  v["process_id"])
  devices = check_devices(v, lc)
  primary = jax.process_index() == 0
  prepare_run_dir(v)
  done = recorders.completed_steps(v["run_dir"])
  if v["branch_from"] is not None and not done:
    check_branch(v)
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
  except checkpoint.IncompatibleCheckpoint as e:  # an older version's checkpoint
    raise UsageError(str(e)) from None
  except loop.Interrupted as e:
    print(f"[{v['env_id']}] interrupted by {e.args[0]}: checkpoint written; rerun the same "
          "command to resume", file=sys.stderr, flush=True)
    return 128 + e.signum
  return 0


if __name__ == "__main__":
  cli.run(main)
