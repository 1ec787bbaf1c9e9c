r"""Rerun a claim of the SAC paper from one command: runs, a figure, a table and a verdict.

    python -m experiments.reproduce --claim=hard --budget=cpu
    python -m experiments.reproduce --claim=grad_steps --budget=smoke --out=/tmp/g
    python -m experiments.reproduce --status --budget=cpu   # where every claim's runs stand

Claims (paper section 5; the task flagfiles carry the reward scales calibrated on v5):

    tasks        every task flagfile learns: the paper configuration (and, as a second
                 line, the later SAC of modern.flags: 100k steps at the cpu budget) on
                 HalfCheetah, Hopper, Walker2d and Ant; holds per task when the mean final
                 return over seeds reaches the bar (HalfCheetah 3,500, Hopper 1,500,
                 Walker2d 1,000, Ant 1,000), judged by the bootstrap interval of the mean.
    sac_vs_ddpg  SAC (paper configuration, G = 1) against DDPG (ddpg.flags, G = 1; and
                 G = 4 on HalfCheetah) on each task; direction: SAC's final return and area
                 under the curve are higher. On HalfCheetah also SAC at G = 4 (the
                 grad_steps run) against DDPG G = 4: equal gradient steps per env step.
    seeds        per-seed curves of SAC and DDPG on HalfCheetah (the paper's Figure 2);
                 direction: SAC's spread of final returns across seeds is smaller.
    hard         alpha = 0 ("hard", no entropy) against the soft setting on HalfCheetah;
                 direction: soft is higher, by more than 20% of the soft arm's mean.
    grad_steps   G = 1, 4, 16 gradient steps per env step on HalfCheetah; direction: more
                 steps, higher final return at equal env steps (G4 > G1 and G16 > G4).
                 --tasks carries it to other tasks (each its own panel): there G = 1
                 and G = 4 only, both the long length (300k at the cpu budget: the
                 tasks claim's horizon, so G = 4 is also read against the tasks bar).
    mixture_gradients  (beyond the paper) the K = 4 mixture with the paper's likelihood
                 ratio, with the marginalized reparameterized gradient (He et al. 2026),
                 and the K = 1 reparameterized Gaussian, everything else the paper's
                 configuration (fixed temperature, calibrated scale), on --tasks
                 (default all four; the issue asks HalfCheetah and Hopper); parts: MRP is
                 higher than the likelihood ratio, and MRP is within 15% of K = 1.
    overlap      (beyond the paper; a check of a speed option, not a claim) the paper
                 configuration with --overlap (actions from parameters one update behind)
                 against the synchronous loop, 100k steps at the cpu budget, on --tasks
                 (HalfCheetah and Hopper were run); parts per task: final return and AUC
                 agree within 15% of the synchronous arm's mean (the bootstrap interval
                 of the difference inside +-15%).
    parity       (beyond the paper) learning parity with a peer: sac_jax with modern.flags
                 (SAC 2018b) against stable-baselines-jax's SAC (experiments/peer_learning.py:
                 the same settings, the same evaluation protocol), compared at 100k steps at
                 the cpu budget (ours is the `tasks` claim's modern run), on --tasks
                 (default HalfCheetah and Hopper); parts per task and
                 statistic (final, AUC): "sac_jax is not below the peer beyond seed noise":
                 does not hold if the peer is higher (one-sided permutation p < 0.05);
                 else holds if the bootstrap interval of peer - sac_jax lies below 15% of
                 the peer's mean (sac_jax at most 15% lower, or higher); else
                 inconclusive. `--peer=random` (plumbing tests only)
                 swaps the peer for a uniform-random policy that needs no sbx.
    components   K = 1, 2, 4, 8 mixture components on HalfCheetah; the paper's claim is
                 near-equivalence, tested as "the best arm is K = 2 or 4, or K = 2 or K = 4
                 is within 15% of the best arm's mean final return" (bootstrap interval of
                 the gap against that margin).
    settings     (a search, for a task whose bar the tasks claim does not meet) one-flag
                 variants of a task flagfile, `--setting=NAME=VALUE` once per arm (e.g.
                 --setting=tau=0.005 --setting=batch_size=256), beside the flagfile as it
                 is (the arm "default": the tasks claim's paper run), on --tasks (default
                 Walker2d). Parts per task: each arm's mean final return against the
                 tasks bar (the tasks claim's test), and each variant's final return above
                 the default's (one-sided permutation test). Verdict: holds when some
                 variant meets the bar (its interval above it), does not hold when every
                 variant's interval lies below it, else inconclusive. The seeds that pick
                 a setting have served every setting tried on them: confirm a winner on
                 fresh seeds (--first_seed) before a flagfile takes it. (At the smoke
                 budget its tiny sizes win over a --setting of the same flags.)

Runs are shared between claims: a run is named by what it trains (e.g. halfcheetah-paper,
the SAC arm of five claims), and each comparison meets its two arms at equal env steps
(both curves cut at the shorter one's horizon: G = 4 and 16, the overlap and modern runs and
the peer run 100k steps at the cpu budget, the rest 300k, so SAC meets DDPG G = 1 at 300k
and DDPG G = 4 at 100k).

Budgets: `smoke` (tiny networks, a few hundred steps: checks the plumbing in a minute or
two; its verdicts mean nothing), `cpu` (what a 2-core CPU does in hours; steps per claim in
CPU_STEPS), `paper` (the task flagfiles' budgets, 1M-3M steps: on one CPU core a 1M run
of 5 seeds takes about 3 hours, a 3M run 7-12 hours; `--up_to=1000000` reads a 3M run at 1M).

Protocol: fresh seeds (--first_seed=100 onward; the calibration used 0 and 1), 5 seeds per arm,
deterministic evaluation (the best-Q component) of 5 episodes every 5,000
env steps, replay sized to the budget. Per seed: final return = the mean of the last 3
evaluations, AUC = the mean over all evaluations, max = the best evaluation (the TD3
paper's statistic). Verdicts: experiments/verdict.py (exact permutation tests, bootstrap
intervals; "holds", "does not hold" or "inconclusive at this budget", never forced).

Every run is an `experiments.run` process (the parity claim's peer: an
`experiments.peer_learning` process, resumable per seed) with its own run directory
<runs_dir>/<budget>/<run>, so rerunning the same command resumes unfinished runs from their
checkpoints and skips finished ones. Outputs in --out (default
<runs_dir>/<budget>/claims/<claim>): figure.png, table.md, verdict.json, returns.csv (per
seed: final, AUC, max) and curves.csv (every evaluation).

`--up_to=N` analyzes every curve up to N env steps (a 3M task at 1M, where the TD3 paper's
rerun reports). `--analyze_only` while a run is under way analyzes its evaluations so far:
the outputs say "interim" and where each such run stands (verdict.json's `interim`), so a
reading of a run in progress is never taken for the finished run's.

A run directory lives on the machine that trained it. Each complete run (cpu and paper
budgets) is also archived in the repository, docs/reproduction/runs/<budget>/<run>.csv (every
evaluation) and .json (its configuration with the flagfiles expanded, the command): a later
command on any machine reads it instead of training again, as long as the configuration the
claim would train now is the archived one (a recalibrated flagfile makes the archive stale:
--status names the flags that differ). experiments/run_archive.py.

More seeds for an arm (a verdict inconclusive at 5 seeds): `--first_seed=105 --seeds=10`
trains seeds 105-114 in <runs_dir>/<budget>/<run>-seed105 and adds them to the archived run
beside 100-104; `--seeds=15` (from 100) then analyzes all 15 from the archive, training
nothing. An analysis reads only the seeds it asks for, whatever the archive holds.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Callable, Sequence

from absl import app
from absl import flags

import numpy as np

from experiments import references
from experiments import run_archive
from experiments import verdict as V
from sac_jax import settings as S

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS_DIR = os.path.join("experiments", "flags")
ARCHIVE = os.path.join(REPO, "docs", "reproduction", "runs")

TASKS = ("halfcheetah", "hopper", "walker2d", "ant")
THRESHOLDS = dict(halfcheetah=3500.0, hopper=1500.0, walker2d=1000.0, ant=1000.0)
CLAIMS = ("tasks", "sac_vs_ddpg", "seeds", "hard", "grad_steps", "components",
          "mixture_gradients", "overlap", "parity", "settings")
# --tasks left at its default: these claims run on these tasks only (settings: the task
# whose bar the tasks claim does not meet).
CLAIM_TASKS = dict(parity=("halfcheetah", "hopper"), grad_steps=("halfcheetah",),
                   settings=("walker2d",))
# What run_flags sets for every run (the budget's protocol, the seeds, where it writes) or
# --tasks chooses: not a --setting of the settings claim.
PROTOCOL_FLAGS = ("env_id", "seed", "num_seeds", "run_dir", "log_every_s",
                  "total_env_steps", "buffer_size", "eval_every", "eval_episodes",
                  "checkpoint_every", "sweep", "flagfile")
BUDGETS = ("smoke", "cpu", "paper")
# cpu budget: env steps per run. "long" runs are shared by several claims (the paper
# configuration of a task is the SAC arm of tasks, sac_vs_ddpg, seeds, hard, and the K = 4
# and G = 1 arms); G = 4 and G = 16 cost 4x and 16x the updates, so they stop at "short".
CPU_STEPS = dict(long=300_000, short=100_000)
SEEDS = 5
FIRST_SEED = 100
# Checkpoints: every tenth of a run, at most every 100k env steps (a 3M-step run at the
# paper budget on a CPU trains about 100k steps in 13 minutes: a kill loses no more).
CHECKPOINT_EVERY_MAX = 100_000
LAST_EVALS = 3
SMOKE = ["--total_env_steps=300", "--start_steps=100", "--batch_size=16",
         "--hidden_sizes=16,16", "--eval_every=100", "--eval_episodes=1",
         "--buffer_size=300", "--checkpoint_every=0"]
# The peer's smoke budget (experiments.peer_learning): SMOKE's steps, evaluations and start.
PEER_SMOKE = ["--total_env_steps=300", "--learning_starts=100", "--eval_every=100",
              "--eval_episodes=1"]
DDPG = f"--flagfile={FLAGS_DIR}/ddpg.flags"
MODERN = f"--flagfile={FLAGS_DIR}/modern.flags"
SAC_RUNNER, PEER_RUNNER = "experiments.run", "experiments.peer_learning"

flags.DEFINE_enum("claim", None, CLAIMS, "the claim to rerun")
flags.DEFINE_enum("budget", "cpu", BUDGETS, "smoke | cpu | paper")
flags.DEFINE_string("runs_dir", "runs/reproduce", "where the runs go (<runs_dir>/<budget>/"
                    "<run>; claims share runs with equal flags)")
flags.DEFINE_string("out", None, "figure, table and verdict (default: <runs_dir>/<budget>/"
                    "claims/<claim>)")
flags.DEFINE_integer("first_seed", FIRST_SEED, "arms use seeds first_seed .. first_seed + "
                     "seeds - 1")
flags.DEFINE_integer("seeds", None, f"seeds per arm (default {SEEDS}; 2 for smoke)")
flags.DEFINE_list("tasks", list(TASKS), "tasks of the per-task claims (default all; "
                  + "; ".join(f"{c}: {', '.join(t)}" for c, t in CLAIM_TASKS.items()) + ")")
flags.DEFINE_list("arms", None, "only these arms (default all), e.g. --arms=paper")
flags.DEFINE_multi_string("setting", [], "the settings claim: NAME=VALUE, one arm per "
                          "occurrence (a flag of experiments.run set after the task "
                          "flagfile), e.g. --setting=tau=0.005 --setting=batch_size=256")
flags.DEFINE_string("archive_dir", None, "finished runs kept in the repository (curve and "
                    "configuration; experiments/run_archive.py): a run complete there is "
                    "not trained again. Default docs/reproduction/runs for the cpu and "
                    "paper budgets, none for smoke; --archive_dir= turns it off")
flags.DEFINE_bool("analyze_only", False, "do not run anything: analyze the runs there are "
                  "(a run still under way: its evaluations so far, marked interim)")
flags.DEFINE_integer("up_to", None, "analyze every curve up to this many env steps (its "
                     "evaluations at or before it), e.g. a 3M task at 1M, the step count of "
                     "the TD3 paper's rerun; the runs still train their budget's steps. "
                     "Default --out: <runs_dir>/<budget>/claims/<claim>-up_to_<N>")
flags.DEFINE_bool("status", False, "do not run or analyze anything: say where each run of "
                  "the claim stands (all claims' runs without --claim)")
flags.DEFINE_enum("peer", "sbx", ("sbx", "random"), "the parity claim's peer: sbx "
                  "(stable-baselines-jax), or random: a uniform-random policy that checks the "
                  "plumbing without sbx (tests only; its verdicts mean nothing)")


@dataclasses.dataclass(frozen=True)
class Run:
  """One process (`runner`: experiments.run, or experiments.peer_learning for a peer); its
  name is its run directory (unique across claims)."""
  name: str
  task: str
  flags: tuple[str, ...] = ()
  length: str = "long"   # CPU_STEPS key
  runner: str = SAC_RUNNER


@dataclasses.dataclass(frozen=True)
class Arm:
  """A group of seeds: the members of one run."""
  label: str
  run: Run
  panel: str = ""


def _paper(t: str) -> Run:
  return Run(f"{t}-paper", t)


def _modern(t: str) -> Run:
  # SAC 2018b (256 x 256, twin Q, batch 256) costs about 5x the paper configuration's
  # update: at the cpu budget it runs the short length (the parity claim's 100k), so that
  # one run finishes within a session of this 2-core machine.
  return Run(f"{t}-modern", t, (MODERN,), "short")


def _grad_steps(g: int, task: str = "halfcheetah") -> Run:
  """The paper configuration at G gradient steps per env step: on HalfCheetah the short
  length (the paper's Figure 5; G = 16 costs 16x the updates), elsewhere the long one (the
  tasks claim's horizon)."""
  return Run(f"{task}-G{g}", task, (f"--grad_steps={g}",),
             "short" if task == "halfcheetah" else "long")


def parse_setting(text: str) -> tuple[str, str]:
  """"NAME=VALUE" of the settings claim -> (NAME, VALUE); ValueError naming what is wrong
  (not NAME=VALUE, not a setting of experiments.run, a flag the budget's protocol sets, or
  a value the setting refuses)."""
  name, eq, value = text.strip().lstrip("-").partition("=")
  if not eq or not name or not value:
    raise ValueError(f"--setting={text}: must be NAME=VALUE, e.g. --setting=tau=0.005")
  if name in PROTOCOL_FLAGS:
    raise ValueError(f"--setting={text}: {name} is set by the budget's protocol or by "
                     "--tasks; a setting may be any other flag of experiments.run")
  if name not in S.BY_NAME or not S.BY_NAME[name].flag:
    raise ValueError(f"--setting={text}: {name!r} is not a flag of experiments.run "
                     "(e.g. tau, batch_size, lr, grad_steps, reward_scale)")
  setting = S.BY_NAME[name]
  # The value as experiments.run's flag of this kind parses it (absl's parsers).
  parser = dict(int=flags.IntegerParser, float=flags.FloatParser, bool=flags.BooleanParser,
                ints=flags.ListParser).get(setting.kind, flags.ArgumentParser)()
  try:
    parsed = parser.parse(value)
  except ValueError:
    parsed = value   # refused below, as a value of the wrong kind
  why = setting.refusal(parsed)
  if why:
    raise ValueError(f"--setting={text}: {why}")
  return name, value


def setting_run(task: str, text: str) -> Run:
  """The run of one --setting on a task: the task flagfile, then --NAME=VALUE; named
  <task>-<NAME><VALUE> (characters other than letters, digits, '.', '-' and '_' as '_')."""
  name, value = parse_setting(text)
  tag = "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{name}{value}")
  return Run(f"{task}-{tag}", task, (f"--{name}={value}",))


def plan(claim: str, tasks: Sequence[str] | None = None,
         settings: Sequence[str] = ()) -> list[Arm]:
  """The arms of a claim (each names its run); tasks: the claim's own by default;
  settings: the settings claim's NAME=VALUE arms."""
  if tasks is None:
    tasks = CLAIM_TASKS.get(claim, TASKS)
  for t in tasks:
    if t not in TASKS:
      raise ValueError(f"task {t!r}: must be one of {TASKS}")
  if claim == "settings":
    if len(set(settings)) != len(settings):
      raise ValueError(f"--setting: {list(settings)} names an arm twice")
    return [a for t in tasks for a in (
        [Arm("default", _paper(t), t)] +
        [Arm(x.strip().lstrip("-"), setting_run(t, x), t) for x in settings])]
  if claim == "tasks":
    return [a for t in tasks for a in (
        Arm("paper", _paper(t), t),
        Arm("modern", _modern(t), t))]
  if claim == "sac_vs_ddpg":
    arms = []
    for t in tasks:
      arms += [Arm("SAC", _paper(t), t), Arm("DDPG G=1", Run(f"{t}-ddpg", t, (DDPG,)), t)]
      if t == "halfcheetah":
        arms.append(Arm("DDPG G=4", Run(f"{t}-ddpg-G4", t, (DDPG, "--grad_steps=4"),
                                        "short"), t))
        # SAC at DDPG's G = 4 (the paper's Figure 5 shows SAC at G = 1, 4 and 16 against
        # DDPG's best, G = 4): the grad_steps claim's G = 4 run.
        arms.append(Arm("SAC G=4", _grad_steps(4), t))
    return arms
  if claim == "seeds":
    return [Arm("SAC", _paper("halfcheetah")),
            Arm("DDPG", Run("halfcheetah-ddpg", "halfcheetah", (DDPG,)))]
  if claim == "hard":
    return [Arm("soft (alpha=1)", _paper("halfcheetah")),
            Arm("hard (alpha=0)", Run("halfcheetah-hard", "halfcheetah", ("--alpha=0",)))]
  if claim == "grad_steps":
    # HalfCheetah alone (the default) is one unnamed panel; with --tasks each task is a panel.
    one = tuple(tasks) == CLAIM_TASKS["grad_steps"]
    return [a for t in tasks for a in (
        [Arm("G=1", _paper(t), "" if one else t)] +
        [Arm(f"G={g}", _grad_steps(g, t), "" if one else t)
         for g in ((4, 16) if t == "halfcheetah" else (4,))])]
  if claim == "mixture_gradients":
    return [a for t in tasks for a in (
        Arm("K=4 likelihood ratio", _paper(t), t),
        Arm("K=4 marginalized reparam.", Run(f"{t}-mrp", t, (
            f"--flagfile={FLAGS_DIR}/mixture_mrp.flags",)), t),
        Arm("K=1 reparameterized", Run(f"{t}-K1-reparam", t, (
            "--num_components=1", "--policy_gradient=reparameterized")), t))]
  if claim == "overlap":
    return [a for t in tasks for a in (
        Arm("synchronous", _paper(t), t),
        Arm("overlap", Run(f"{t}-overlap", t, ("--overlap",), "short"), t))]
  if claim == "parity":
    return [a for t in tasks for a in (
        # Ours is the `tasks` claim's modern run: one run serves both.
        Arm("sac_jax modern", _modern(t), t),
        Arm("stable-baselines-jax", Run(f"{t}-sbx", t, (), "short", PEER_RUNNER), t))]
  if claim == "components":
    return [Arm(f"K={k}", _paper("halfcheetah") if k == 4 else
                Run(f"halfcheetah-K{k}", "halfcheetah", (f"--num_components={k}",)))
            for k in (1, 2, 4, 8)]
  raise ValueError(f"claim={claim!r}: must be one of {CLAIMS}")


def _task_flag(task: str, name: str) -> str:
  with open(os.path.join(REPO, FLAGS_DIR, f"{task}.flags")) as f:
    for line in f:
      if line.startswith(f"--{name}="):
        return line.split("=", 1)[1].strip()
  raise ValueError(f"{task}.flags sets no --{name}")


def target_steps(budget: str, run: Run) -> int:
  """The env steps a run trains per seed at a budget."""
  if budget == "smoke":
    smoke = PEER_SMOKE if run.runner == PEER_RUNNER else SMOKE
    return int(next(f for f in smoke if f.startswith("--total_env_steps=")).split("=")[1])
  if budget == "cpu":
    return CPU_STEPS[run.length]
  return int(_task_flag(run.task, "total_env_steps"))


def run_dir_name(run: Run, first_seed: int) -> str:
  """A run's directory under <runs_dir>/<budget>: its name; more seeds for it trained later
  (another --first_seed) go to <name>-seed<first_seed> and join the same archived run."""
  return run.name if first_seed == FIRST_SEED else f"{run.name}-seed{first_seed}"


def run_flags(budget: str, run: Run, seed: int, seeds: int, run_dir: str,
              peer: str = "sbx") -> list[str]:
  """The full command line of one run (after `python -m <run.runner>`)."""
  steps = target_steps(budget, run)
  if run.runner == PEER_RUNNER:
    base = [f"--env_id={_task_flag(run.task, 'env_id')}", *run.flags, f"--seed={seed}",
            f"--num_seeds={seeds}", f"--run_dir={run_dir}", f"--peer={peer}"]
    if budget == "smoke":
      return base + PEER_SMOKE
    return base + [f"--total_env_steps={steps}", "--eval_every=5000", "--eval_episodes=5"]
  base = [f"--flagfile={FLAGS_DIR}/{run.task}.flags", *run.flags,
          f"--seed={seed}", f"--num_seeds={seeds}", f"--run_dir={run_dir}",
          "--log_every_s=60"]
  if budget == "smoke":
    return base + SMOKE
  return base + [f"--total_env_steps={steps}", f"--buffer_size={min(steps, 1_000_000)}",
                 "--eval_every=5000", "--eval_episodes=5",
                 f"--checkpoint_every={max(min(steps // 10, CHECKPOINT_EVERY_MAX), 5000)}"]


def read_arm(path: str, seeds: Sequence[int] | None = None
             ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
  """(env steps [T], {seed: returns [T]}) of a run from its metrics.csv, or from an archived
  <run>.csv (a path to a file; a directory means its metrics.csv). Missing: NaN. `seeds`:
  only these (an archive may hold more seeds than a claim asks for)."""
  if os.path.isdir(path):
    path = os.path.join(path, "metrics.csv")
  by_seed = run_archive.read_curves(path)
  if seeds is not None:
    by_seed = {s: d for s, d in by_seed.items() if s in set(seeds)}
  steps = np.array(sorted({s for d in by_seed.values() for s in d}), np.int64)
  return steps, {s: np.array([d.get(int(t), np.nan) for t in steps])
                 for s, d in sorted(by_seed.items())}


def _arm_stats(a: Arm, steps: np.ndarray, curves: dict) -> dict:
  # A member whose curve stops being finite (it diverged) is summarized by its finite
  # evaluations (its final return: the last finite ones): it is never dropped.
  per_seed = {s: V.summarize_curve(c[np.isfinite(c)], LAST_EVALS)
              for s, c in curves.items() if np.isfinite(c).any()}
  finals = [p["final"] for p in per_seed.values()]
  return dict(arm=a.label, panel=a.panel, run=a.run.name, seeds=sorted(per_seed),
              env_steps=int(steps[-1]), final=finals,
              auc=[p["auc"] for p in per_seed.values()],
              max=[p["max"] for p in per_seed.values()],
              final_mean=float(np.mean(finals)),
              final_std=float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0,
              max_mean=float(np.mean([p["max"] for p in per_seed.values()])))


def cut_at(steps: np.ndarray, curves: dict[int, np.ndarray], up_to: int | None
           ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
  """A curve's evaluations at or before `up_to` env steps (None: all of them)."""
  if up_to is None:
    return steps, curves
  keep = steps <= up_to
  return steps[keep], {s: c[keep] for s, c in curves.items()}


def interim_runs(statuses: Sequence[dict], up_to: int | None = None) -> list[dict]:
  """The runs analyzed before they finished (run_status of each run read from its run
  directory): {run, reached: the least env steps over its seeds, target}. A run past
  `up_to` on every seed is not interim there: its curve up to that step is final (a run is
  a function of its seeds)."""
  out = []
  for st in statuses:
    reached = min(st["reached"].values())
    if st["state"] != "complete" and (up_to is None or reached < up_to):
      out.append(dict(run=st["run"], reached=reached, target=st["target"]))
  return out


def analyze(claim: str, arms: Sequence[Arm], data: dict[str, tuple], budget: str) -> dict:
  """The verdict dict of a claim from {arm key: (steps, {seed: curve})}.

  `arms` summarizes every arm at its own horizon (its last evaluation). Each part compares
  its arms at equal env steps: their curves cut at the shortest one's horizon, which the
  part records as `env_steps` (with each arm's mean of the tested statistic there, `means`).
  So on HalfCheetah SAC meets DDPG G = 1 at 300k and DDPG G = 4 (a 100k run at the cpu
  budget) at 100k; one short arm never cuts the others' comparison. `tasks` judges each arm
  alone against an absolute bar, at its own horizon.
  """
  arm_of = {_key(a): a for a in arms}
  stats = {k: _arm_stats(arm_of[k], *data[k]) for k in arm_of}
  out: dict = dict(claim=claim, budget=budget, arms=stats, parts=[])

  def common(*keys: str) -> list[dict]:
    """The arms' statistics with every curve cut at the shortest one's horizon."""
    horizon = min(int(data[k][0][-1]) for k in keys)
    return [_arm_stats(arm_of[k], *cut_at(*data[k], horizon)) for k in keys]

  def part(name: str, test: Callable[..., dict], keys: Sequence[str], stat: str = "final",
           **kw) -> dict:
    cut = common(*keys)
    return dict(part=name, **test(*(c[stat] for c in cut), **kw),
                env_steps=cut[0]["env_steps"],
                means=[float(np.mean(c[stat])) for c in cut])

  # A claim run on a subset of its arms (--arms) gets the parts whose arms are all there.
  key = lambda panel, label: (k if (k := _key(Arm(label, None, panel))) in stats else None)

  def bar_part(t: str, k: str, what: str) -> dict:
    """The tasks bar: arm k's mean final return >= the task's bar, judged by the bootstrap
    95% interval of the mean (above it: holds; below it: does not hold)."""
    s, bar = stats[k], THRESHOLDS[t]
    lo, hi = V.mean_ci95(s["final"])
    v = V.HOLDS if lo >= bar else V.FAILS if hi < bar else V.INCONCLUSIVE
    return dict(part=f"{t}: {what} mean final >= {bar:g}", verdict=v, mean=s["final_mean"],
                ci95=[float(lo), float(hi)], meets_bar=bool(s["final_mean"] >= bar),
                env_steps=s["env_steps"])

  if claim == "tasks":
    for t in dict.fromkeys(a.panel for a in arms):
      if f"{t}/paper" in stats:
        out["parts"].append(bar_part(t, f"{t}/paper", "paper config"))
  elif claim == "settings":
    bars = []
    for t in dict.fromkeys(a.panel for a in arms):
      ks = [k for k in stats if stats[k]["panel"] == t]
      for k in ks:
        label = stats[k]["arm"]
        out["parts"].append(bar_part(t, k, label))
        if label != "default":
          bars.append(out["parts"][-1]["verdict"])
      default = key(t, "default")
      for k in ks:
        if default and k != default:
          out["parts"].append(part(f"{t}: {stats[k]['arm']} final > default final",
                                   V.directional, (k, default)))
    # A search: it succeeds when one variant meets the bar, fails when none can.
    if bars:
      out["verdict"] = (V.HOLDS if V.HOLDS in bars else
                        V.FAILS if all(v == V.FAILS for v in bars) else V.INCONCLUSIVE)
    elif out["parts"]:
      out["verdict"] = V.INCONCLUSIVE
      out["note"] = ("no --setting arm in this analysis: the default's bar alone, which "
                     "the tasks claim tests")
  elif claim == "sac_vs_ddpg":
    for t in dict.fromkeys(a.panel for a in arms):
      for s_label, d_label in (("SAC", "DDPG G=1"), ("SAC", "DDPG G=4"),
                               ("SAC G=4", "DDPG G=4")):
        sac, d = key(t, s_label), key(t, d_label)
        if sac is None or d is None:
          continue
        for stat in ("final", "auc"):
          out["parts"].append(part(f"{t}: {s_label} {stat} > {d_label} {stat}",
                                   V.directional, (sac, d), stat))
  elif claim == "mixture_gradients":
    for t in dict.fromkeys(a.panel for a in arms):
      lr, mrp, k1 = (key(t, x) for x in ("K=4 likelihood ratio",
                                          "K=4 marginalized reparam.",
                                          "K=1 reparameterized"))
      if mrp and lr:
        out["parts"].append(part(f"{t}: K=4 MRP final > K=4 likelihood ratio final",
                                 V.directional, (mrp, lr)))
      if mrp and k1:
        k1_final = common(k1, mrp)[0]["final_mean"]
        out["parts"].append(part(
            f"{t}: K=4 MRP within 15% of K=1 reparameterized (parity)",
            V.within, (k1, mrp), margin=0.15 * abs(k1_final)))
  elif claim == "overlap":
    for t in dict.fromkeys(a.panel for a in arms):
      sync, over = key(t, "synchronous"), key(t, "overlap")
      for stat in ("final", "auc") if sync and over else ():
        margin = 0.15 * abs(float(np.mean(common(sync, over)[0][stat])))
        out["parts"].append(part(
            f"{t}: overlap {stat} agrees with synchronous {stat} within 15%",
            V.equivalent, (over, sync), stat, margin=margin))
  elif claim == "parity":
    for t in dict.fromkeys(a.panel for a in arms):
      ours, peer = key(t, "sac_jax modern"), key(t, "stable-baselines-jax")
      for stat in ("final", "auc") if ours and peer else ():
        out["parts"].append(part(
            f"{t}: sac_jax modern {stat} not below stable-baselines-jax {stat} beyond "
            "seed noise (effect: peer - sac_jax; margin 15% of the peer's mean)",
            not_below, (ours, peer), stat, rel_margin=0.15))
  elif claim == "seeds":
    sac, ddpg = key("", "SAC"), key("", "DDPG")
    if sac and ddpg:
      out["parts"].append(part("SAC's spread of final returns across seeds < DDPG's",
                               V.spread_smaller, (sac, ddpg)))
  elif claim == "hard":
    soft, hard = key("", "soft (alpha=1)"), key("", "hard (alpha=0)")
    if soft and hard:
      margin = 0.2 * abs(common(soft, hard)[0]["final_mean"])
      out["parts"].append(part("soft final > hard final (margin: 20% of soft's mean)",
                               V.directional, (soft, hard), margin=margin))
  elif claim == "grad_steps":
    for t in dict.fromkeys(a.panel for a in arms):
      keys = [k for k in stats if stats[k]["panel"] == t]
      for lo_k, hi_k in zip(keys[:-1], keys[1:]):
        out["parts"].append(part(
            f"{t + ': ' if t else ''}{stats[hi_k]['arm']} final > {stats[lo_k]['arm']} final",
            V.directional, (hi_k, lo_k)))
  elif claim == "components":
    # Near-equivalence among all K: every arm at the horizon they share.
    cut = dict(zip(stats, common(*stats))) if stats else {}
    best_k = max(cut, key=lambda k: cut[k]["final_mean"]) if cut else None
    margin = 0.15 * abs(cut[best_k]["final_mean"]) if cut else 0.0
    parts = [part(f"{stats[k]['arm']} within 15% of the best ({stats[best_k]['arm']})",
                  V.within, (best_k, k), margin=margin) for k in cut if k != best_k]
    out["parts"] = parts
    verdicts = [p["verdict"] for p in parts if p["part"].startswith(("K=2 ", "K=4 "))]
    if not parts:
      pass   # one arm: nothing to compare (below)
    elif stats[best_k]["arm"] in ("K=2", "K=4"):
      out["verdict"] = V.HOLDS
    else:
      out["verdict"] = (V.HOLDS if V.HOLDS in verdicts else
                        V.FAILS if verdicts and all(v == V.FAILS for v in verdicts) else
                        V.INCONCLUSIVE)
    if best_k is not None:
      out["best_arm"] = stats[best_k]["arm"]
  # Side by side (descriptive, no verdict): each panel's arms at the shortest one's horizon,
  # where their horizons differ (the arms table gives each its own; tasks: always, the
  # modern line's 100k beside the paper configuration).
  out["side_by_side"] = [
      c for t in dict.fromkeys(a.panel for a in arms)
      if len(ks := [k for k in stats if stats[k]["panel"] == t]) > 1
      and (claim == "tasks" or len({stats[k]["env_steps"] for k in ks}) > 1)
      for c in common(*ks)]
  if not out["parts"]:
    out["verdict"] = V.INCONCLUSIVE
    out["note"] = "no part of this claim can be tested with the arms given"
  if "verdict" not in out:
    out["verdict"] = V.combine([p["verdict"] for p in out["parts"]])
  if budget == "smoke":
    out["note"] = "smoke budget: checks the plumbing only; the verdict means nothing"
  return out


def mark_cut_and_interim(result: dict, up_to: int | None, interim: Sequence[dict],
                         ends: dict[str, int] | None = None) -> dict:
  """Says in the result (verdict.json, the table's notes, the figure's title) that the
  curves were cut at --up_to (and which runs end before it: `ends`, {run: its last
  evaluated env step}), and which runs were still under way."""
  notes = []
  if up_to is not None:
    result["up_to"] = up_to
    notes.append(f"Every curve cut at {up_to:,} env steps (--up_to).")
    short = sorted((r, t) for r, t in (ends or {}).items() if t < up_to)
    if short:
      notes.append("Ending before it: " + "; ".join(f"{r} at {t:,}" for r, t in short) + ".")
  if interim:
    result["interim"] = list(interim)
    notes.append("Interim: " + "; ".join(
        f"run {i['run']} is under way, at {i['reached']:,} of {i['target']:,} env steps"
        for i in interim) + ": this analysis reads its evaluations so far, not the finished "
        "run.")
  if notes:
    result["note"] = " ".join([result.get("note", "")] + notes).strip()
  return result


def not_below(ours: Sequence[float], peer: Sequence[float], rel_margin: float) -> dict:
  """Verdict on "ours is not below peer beyond seed noise" (effect = mean(peer) -
  mean(ours), margin = rel_margin x |mean(peer)|): does not hold if the peer is higher
  (V.directional(peer, ours) holds: one-sided permutation p < 0.05, however small the gap);
  else holds if the bootstrap interval's upper end is below the margin (V.within: ours at
  most that much lower, or higher); else inconclusive at this budget."""
  margin = rel_margin * abs(float(np.mean(peer)))
  higher = V.directional(peer, ours)
  near = V.within(peer, ours, margin)
  verdict = (V.FAILS if higher["verdict"] == V.HOLDS else
             V.HOLDS if near["verdict"] == V.HOLDS else V.INCONCLUSIVE)
  return dict(near, verdict=verdict, peer_higher=higher["verdict"],
              test=f"peer higher: {higher['test']}; the gap within the margin: "
                   f"{near['test']}")


def _key(a: Arm) -> str:
  return f"{a.panel}/{a.label}" if a.panel else a.label


def write_outputs(out_dir: str, claim: str, arms: Sequence[Arm], data: dict, result: dict,
                  commands: list[str]) -> None:
  os.makedirs(out_dir, exist_ok=True)
  result = dict(result, commands=commands, zero_action=zero_action_refs(arms))
  with open(os.path.join(out_dir, "verdict.json"), "w") as f:
    json.dump(result, f, indent=2, allow_nan=False)
    f.write("\n")
  with open(os.path.join(out_dir, "returns.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["panel", "arm", "seed", "final", "auc", "max", "env_steps"])
    for s in result["arms"].values():
      for i, seed in enumerate(s["seeds"]):
        w.writerow([s["panel"], s["arm"], seed, f"{s['final'][i]:.2f}",
                    f"{s['auc'][i]:.2f}", f"{s['max'][i]:.2f}", s["env_steps"]])
  with open(os.path.join(out_dir, "curves.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["panel", "arm", "seed", "env_step", "eval_return"])
    for a in arms:
      steps, curves = data[_key(a)]
      for seed, c in curves.items():
        for t, r in zip(steps, c):
          if np.isfinite(r):
            w.writerow([a.panel, a.label, seed, int(t), f"{r:.2f}"])
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write(table_markdown(result))
  plot(os.path.join(out_dir, "figure.png"), claim, arms, data, result)


def zero_action_refs(arms: Sequence[Arm]) -> dict:
  """{task: what the zero action scores there} for the tasks of `arms`
  (experiments/references.py): the floor each curve is read against."""
  out = {}
  for t in dict.fromkeys(a.run.task for a in arms):
    if t in references.ZERO_ACTION:
      mean, sd, length = references.ZERO_ACTION[t]
      out[t] = dict(env_id=references.ENV_IDS[t], mean=mean, sd=sd, episode_length=length,
                    episodes=references.EPISODES,
                    env_seeds=[references.FIRST_SEED,
                               references.FIRST_SEED + references.EPISODES - 1])
  return out


def table_markdown(result: dict) -> str:
  lines = [f"Claim `{result['claim']}`, budget `{result['budget']}`: **{result['verdict']}**",
           "", "| arm | seeds | env steps | final (mean ± sd) | per seed | max over evals "
           "(mean) |", "| --- | --- | --- | --- | --- | --- |"]
  for s in result["arms"].values():
    name = f"{s['panel']} {s['arm']}".strip()
    lines.append(f"| {name} | {len(s['seeds'])} | {s['env_steps']:,} | "
                 f"{s['final_mean']:,.0f} ± {s['final_std']:,.0f} | "
                 + ", ".join(f"{x:,.0f}" for x in s["final"]) +
                 f" | {s['max_mean']:,.0f} |")
  if result.get("side_by_side"):
    lines += ["", "Side by side at equal env steps (descriptive, no verdict):", "",
              "| arm | seeds | env steps | final (mean ± sd) | per seed | AUC (mean) | "
              "max over evals (mean) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in result["side_by_side"]:
      name = f"{s['panel']} {s['arm']}".strip()
      lines.append(f"| {name} | {len(s['seeds'])} | {s['env_steps']:,} | "
                   f"{s['final_mean']:,.0f} ± {s['final_std']:,.0f} | "
                   + ", ".join(f"{x:,.0f}" for x in s["final"]) +
                   f" | {np.mean(s['auc']):,.0f} | {s['max_mean']:,.0f} |")
  lines += ["", "| part | at env steps | verdict | effect [95% interval] | p |",
            "| --- | --- | --- | --- | --- |"]
  for p in result["parts"]:
    eff = (f"{p['effect']:,.0f} [{p['ci95'][0]:,.0f}, {p['ci95'][1]:,.0f}]"
           if "effect" in p else f"mean {p['mean']:,.0f} [{p['ci95'][0]:,.0f}, "
           f"{p['ci95'][1]:,.0f}]")
    pval = p.get("p_greater", p.get("p", ""))
    lines.append(f"| {p['part']} | {p['env_steps']:,} | {p['verdict']} | {eff} | "
                 f"{pval if pval == '' else f'{pval:.3f}'} |")
  if result.get("note"):
    lines += ["", result["note"]]
  floors = result.get("zero_action")
  if floors:
    episodes = next(iter(floors.values()))["episodes"]
    scores = ", ".join(f"{r['env_id']} {round(r['mean']):,} ± {round(r['sd']):,}"
                       for r in floors.values())
    lines += ["", "For reference, a policy that does nothing (the zero action; "
              f"experiments/references.py, {episodes} episodes) scores {scores}."]
  return "\n".join(lines) + "\n"


def plot(path: str, claim: str, arms: Sequence[Arm], data: dict, result: dict) -> None:
  import matplotlib.pyplot as plt
  fig = figure(claim, arms, data, result)
  fig.savefig(path)
  plt.close(fig)


# A panel with more arms than this draws each arm's mean alone: beyond a few arms the
# min-max bands and per-seed lines cover one another (the settings search on Walker2d has
# nine); its table and verdict.json keep every seed.
DETAILED_ARMS = 4


def figure(claim: str, arms: Sequence[Arm], data: dict, result: dict):
  """The claim's figure (one panel per task): each arm's mean over seeds, min-max band and
  per-seed lines (a panel of more than DETAILED_ARMS arms: the means alone, its legend
  beside it); on each task panel the zero action's return (the floor) and, for the tasks
  claim, the bar."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  panels = list(dict.fromkeys(a.panel for a in arms))
  crowded = {p for p in panels if sum(a.panel == p for a in arms) > DETAILED_ARMS}
  fig, axes = plt.subplots(1, len(panels), dpi=110, squeeze=False, figsize=(
      5.2 * len(panels) + 2.8 * len(crowded), 4.0))
  colors = plt.cm.tab10(np.arange(10))
  for ax, panel in zip(axes[0], panels):
    for i, a in enumerate(x for x in arms if x.panel == panel):
      steps, curves = data[_key(a)]
      mat = np.array(list(curves.values()))
      c = colors[i % 10]
      mean = np.nanmean(mat, axis=0)
      if panel not in crowded:
        for row in mat:
          ax.plot(steps, row, color=c, lw=0.6, alpha=0.45)
        ax.fill_between(steps, np.nanmin(mat, axis=0), np.nanmax(mat, axis=0), color=c,
                        alpha=0.15, lw=0)
      s = result["arms"][_key(a)]
      ax.plot(steps, mean, color=c, lw=2.0, label=f"{a.label} ({len(mat)} seeds, final "
                                                   f"{s['final_mean']:,.0f})")
    tasks = {a.run.task for a in arms if a.panel == panel}
    task = tasks.pop() if len(tasks) == 1 else None
    ref = result.get("zero_action", {}).get(task)
    if ref is not None:   # the floor: what doing nothing scores on this task
      ax.axhline(ref["mean"], color="0.35", ls=":", lw=1.0,
                 label=f"zero action (does nothing): {round(ref['mean']):,}")
    if claim == "tasks" and task in THRESHOLDS:
      ax.axhline(THRESHOLDS[task], color="k", ls="--", lw=0.8,
                 label=f"the bar: {THRESHOLDS[task]:,.0f}")
    ends = {int(data[_key(a)][0][-1]) for a in arms if a.panel == panel}
    for end in sorted(ends)[:-1] if claim != "tasks" else ():   # tasks: no comparison
      ax.axvline(end, color="gray", ls="--", lw=0.8)
      ax.text(end, ax.get_ylim()[0], " the shorter arm compared here", fontsize=7,
              color="gray", va="bottom")
    ax.set_title(panel or claim)
    ax.set_xlabel("env steps")
    ax.set_ylabel("deterministic evaluation return")
    ax.grid(alpha=0.3)
    if panel in crowded:
      ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
      ax.legend(fontsize=7, loc="upper left")
  how = (["mean over seeds (thick), min-max band, each seed thin"]
         if len(crowded) < len(panels) else []) + (
      [f"a panel of more than {DETAILED_ARMS} arms: the means over seeds alone"]
      if crowded else [])
  when = ([f"up to {result['up_to']:,} env steps"] if result.get("up_to") else []) + (
      ["INTERIM: runs under way"] if result.get("interim") else [])
  fig.suptitle(f"{claim} ({result['budget']} budget"
               + "".join(f", {w}" for w in when) + f"): {result['verdict']}\n"
               + "; ".join(how), fontsize=9)
  fig.tight_layout()
  return fig


def run_status(run: Run, run_dir: str, budget: str, first_seed: int, seeds: int,
               archived: str | None = None, archive_note: str = "") -> dict:
  """Where a run stands, from its run directory: state "not started", "under way" or
  "complete"; per seed the last evaluated env step; the checkpoint a rerun resumes from.
  `archived`: the run's archived curve (run_archive.lookup), which makes it complete."""
  want = list(range(first_seed, first_seed + seeds))
  target = target_steps(budget, run)
  if archived:
    return dict(run=run.name, state="complete", target=target,
                reached={s: target for s in want}, complete=want, resume={},
                runner=run.runner, archived=archived, archive_note="")
  reached = {s: 0 for s in want}
  path = os.path.join(run_dir, "metrics.csv")
  if os.path.exists(path):
    with open(path, newline="") as f:
      for row in csv.DictReader(f):
        s = int(row["seed"])
        if s in reached:
          reached[s] = max(reached[s], int(row["env_step"]))
  complete = [s for s in want if reached[s] >= target]
  state = ("complete" if len(complete) == len(want) else
           "partial" if complete and all(reached[s] in (0, target) for s in want) and
           run.runner != PEER_RUNNER else
           "under way" if any(reached.values()) or os.path.exists(run_dir) else "not started")
  ckpt_dir = os.path.join(run_dir, "checkpoints")
  names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
  if run.runner == PEER_RUNNER:   # seed_<s>.pkl after every evaluation of a partial seed
    resume = {int(n[5:-4]): reached.get(int(n[5:-4]), 0) for n in names
              if n.startswith("seed_") and n.endswith(".pkl") and n[5:-4].isdigit()}
  else:                           # orbax steps: one directory per checkpointed env step
    steps = [int(n) for n in names if n.isdigit()]
    resume = {"all": max(steps)} if steps else {}
  return dict(run=run.name, dir=os.path.basename(run_dir), state=state, target=target,
              reached=reached,
              complete=complete, resume=resume, runner=run.runner, archived=None,
              archive_note=archive_note)


def format_status(st: dict) -> str:
  line = _format_status(st)
  if st.get("dir", st["run"]) != st["run"]:   # more seeds for an archived run
    line += f"; run directory {st['dir']}, archived with {st['run']}"
  if st.get("archived"):
    line += f"; in the archive {os.path.relpath(st['archived'], REPO)}"
  if st.get("archive_note"):
    line += f"; {st['archive_note']}"
  return line


def _format_status(st: dict) -> str:
  n, target = len(st["reached"]), st["target"]
  line = f"{st['run']:<28} {st['state']:<11}"
  if st["state"] == "not started":
    return line + f" 0 / {target:,} env steps ({n} seeds)"
  if st["runner"] == PEER_RUNNER:   # seeds train one after another
    partial = {s: t for s, t in st["reached"].items() if 0 < t < target}
    line += f" {len(st['complete'])} / {n} seeds complete ({target:,} env steps each)"
    for s, t in sorted(partial.items()):
      how = ("resumes there" if s in st["resume"] else "no checkpoint: restarts")
      line += f"; seed {s} at {t:,} ({how})"
    return line
  present = {s: t for s, t in st["reached"].items() if t > 0}
  absent = sorted(set(st["reached"]) - set(present))
  if present and absent:   # trained with fewer seeds than asked: a rerun would be refused
    low = min(present.values())
    return line + (f" {low:,} / {target:,} env steps for seeds "
                   f"{', '.join(map(str, sorted(present)))}; seeds "
                   f"{', '.join(map(str, absent))} are not in this run (it has "
                   f"{len(present)} seeds: use --seeds={len(present)} for it)")
  low = min(st["reached"].values())
  line += f" {low:,} / {target:,} env steps ({n} seeds)"
  if st["state"] == "under way":
    line += (f"; resumes from the checkpoint at {st['resume']['all']:,}" if st["resume"]
             else "; no checkpoint: restarts")
  return line


def archive_dir(flag: str | None, budget: str) -> str | None:
  """<archive>/<budget>: --archive_dir, else docs/reproduction/runs for the cpu and paper
  budgets (smoke runs are not archived unless asked); --archive_dir= turns it off."""
  if flag is None:
    flag = "" if budget == "smoke" else ARCHIVE
  return os.path.join(os.path.abspath(flag), budget) if flag else None


def _complete(run: Run, run_dir: str, budget: str, first_seed: int, seeds: int) -> bool:
  return run_status(run, run_dir, budget, first_seed, seeds)["state"] == "complete"


def archive_run(archive: str, run: Run, run_dir: str, argv: Sequence[str], command: str,
                target: int) -> tuple[str, list[int]]:
  """Copy a complete run's evaluations (its complete seeds, up to the target) and its
  configuration into the archive, beside the seeds archived there before with the same
  configuration (run_archive.add); returns the archived curve's path and the seeds it
  then holds."""
  by_seed = run_archive.read_curves(os.path.join(run_dir, "metrics.csv"))
  curves = {s: [(t, r) for t, r in d.items() if t <= target]
            for s, d in by_seed.items() if max(d) >= target}
  held = run_archive.add(archive, run.name, run.runner, run_archive.resolve(argv, REPO),
                         command, target, curves, source=f"run directory {run_dir}")
  return run_archive.paths(archive, run.name)[0], held


def untested(claim: str | None, tasks: Sequence[str] | None, planned: Sequence[Arm],
             arms: Sequence[Arm]) -> list[str]:
  """What a subset leaves untested, said in the outputs: the claim's own tasks that --tasks
  (given: tasks, else None) drops, and the planned arms that --arms drops. The settings
  claim has no tasks of its own (walker2d is only where it looks by default): choosing
  another task leaves nothing of it out."""
  out = []
  if claim and claim != "settings" and tasks is not None and (gone := [
      t for t in CLAIM_TASKS.get(claim, TASKS) if t not in tasks]):
    out.append("tasks " + ", ".join(gone))
  if gone_arms := [f"{a.panel} {a.label}".strip() for a in planned if a not in arms]:
    out.append("arms " + ", ".join(gone_arms))
  return out


def _ranges(seeds: Sequence[int]) -> str:
  """100, 101, 102, 105 -> "100-102, 105"."""
  out, seeds = [], sorted(seeds)
  for s in seeds:
    if out and s == out[-1][1] + 1:
      out[-1][1] = s
    else:
      out.append([s, s])
  return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in out)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected argument(s) {argv[1:]}")
  F = flags.FLAGS
  if F.claim is None and not F.status:
    raise app.UsageError(f"--claim is required: one of {', '.join(CLAIMS)}")
  claims = [F.claim] if F.claim else list(CLAIMS)
  if F.claim == "settings" and not F.setting:
    raise app.UsageError("--claim=settings needs one --setting=NAME=VALUE per arm, e.g. "
                         "--setting=tau=0.005 --setting=batch_size=256")
  if F.setting and F.claim != "settings":
    raise app.UsageError(f"--setting={F.setting[0]}: only --claim=settings takes "
                         "--setting")
  try:
    arms = [a for c in claims for a in plan(c, F.tasks if F["tasks"].present
                                             else CLAIM_TASKS.get(c, TASKS), F.setting)]
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  planned = arms
  if F.arms:
    unknown = set(F.arms) - {a.label for a in arms}
    if unknown:
      raise app.UsageError(f"--arms {sorted(unknown)}: this claim's arms are "
                           f"{sorted({a.label for a in arms})}")
    arms = [a for a in arms if a.label in F.arms]
  left_out = untested(F.claim, F.tasks if F["tasks"].present else None, planned, arms)
  seeds = F.seeds or (2 if F.budget == "smoke" else SEEDS)
  if seeds < 2:
    raise app.UsageError(f"--seeds={seeds}: a verdict needs 2 or more seeds per arm")
  if F.up_to is not None and F.up_to <= 0:
    raise app.UsageError(f"--up_to={F.up_to}: must be a positive number of env steps "
                         "(e.g. --up_to=1000000)")
  base = os.path.abspath(os.path.join(F.runs_dir, F.budget))
  out_dir = F.out or os.path.join(base, "claims", (F.claim or "") + (
      f"-up_to_{F.up_to}" if F.up_to is not None else ""))
  runs = list(dict.fromkeys(a.run for a in arms))
  archive = archive_dir(F.archive_dir, F.budget)
  want = list(range(F.first_seed, F.first_seed + seeds))
  run_dirs = {r: os.path.join(base, run_dir_name(r, F.first_seed)) for r in runs}
  argvs = {r: run_flags(F.budget, r, F.first_seed, seeds, run_dirs[r], F.peer) for r in runs}
  # A run complete in the archive is not trained again: its archived curve is its data.
  found = {r: run_archive.lookup(archive, r.name, run_archive.resolve(argvs[r], REPO), want,
                                 target_steps(F.budget, r)) for r in runs}
  if F.status:
    print(f"[reproduce {F.claim or 'all claims'}] {F.budget} budget, runs in {base}"
          + (f", archive {os.path.relpath(archive, REPO)}" if archive else "") + ":")
    for r in runs:
      print("  " + format_status(run_status(r, run_dirs[r], F.budget, F.first_seed, seeds,
                                            *found[r])))
    print("A rerun of the claim's command (without --status) resumes every run under way.")
    return 0
  commands, sources = [], {}
  for r in runs:
    run_dir = run_dirs[r]
    cmd = [sys.executable, "-m", r.runner, *argvs[r]]
    commands.append(" ".join(["python"] + cmd[1:]))
    archived, why = found[r]
    if archived and not _complete(r, run_dir, F.budget, F.first_seed, seeds):
      print(f"[reproduce {F.claim}] run {r.name} is complete in the archive "
            f"{os.path.relpath(archived, REPO)}: not trained again", flush=True)
      sources[r] = archived
      continue
    if why:
      print(f"[reproduce {F.claim}] run {r.name}: {why}", flush=True)
    if F.analyze_only:
      continue
    print(f"[reproduce {F.claim}] run {r.name}: {' '.join(cmd[3:])}", flush=True)
    t0 = time.time()
    rc = subprocess.run(cmd, cwd=REPO).returncode
    if rc != 0:
      print(f"[reproduce {F.claim}] run {r.name} exited {rc}; rerun the same command to "
            "resume", file=sys.stderr, flush=True)
      return rc
    print(f"[reproduce {F.claim}] run {r.name} finished in {time.time() - t0:.0f} s",
          flush=True)
    # Archived only after the runner itself accepted the run directory's flags as this
    # command's (it refuses to resume or extend a run made with other flags).
    # (Never the uniform-random stand-in of --peer=random.)
    if (archive and _complete(r, run_dir, F.budget, F.first_seed, seeds)
        and not (r.runner == PEER_RUNNER and F.peer == "random")):
      path, held = archive_run(archive, r, run_dir, argvs[r], commands[-1],
                               target_steps(F.budget, r))
      print(f"[reproduce {F.claim}] run {r.name} archived in "
            f"{os.path.relpath(path, REPO)} (seeds {_ranges(held)})", flush=True)
  missing = [os.path.basename(run_dirs[r]) for r in runs if r not in sources and
             not os.path.exists(os.path.join(run_dirs[r], "metrics.csv"))]
  if missing:
    raise app.UsageError(
        f"--analyze_only: no metrics.csv in {base} for run(s) {', '.join(missing)}: run "
        "the claim without --analyze_only, or leave those arms out with --arms/--tasks")
  data = {_key(a): read_arm(sources.get(a.run, run_dirs[a.run]), want) for a in arms}
  ends = {a.run.name: int(data[_key(a)][0][-1]) for a in arms if len(data[_key(a)][0])}
  data = {k: cut_at(*d, F.up_to) for k, d in data.items()}
  if F.up_to is not None and (empty := [_key(a) for a in arms if not len(data[_key(a)][0])]):
    raise app.UsageError(f"--up_to={F.up_to}: arm(s) {', '.join(empty)} have no "
                         f"evaluation at or before {F.up_to:,} env steps")
  result = analyze(F.claim, arms, data, F.budget)
  mark_cut_and_interim(result, F.up_to, interim_runs(
      [run_status(r, run_dirs[r], F.budget, F.first_seed, seeds) for r in runs
       if r not in sources], F.up_to), ends)
  if left_out:
    result["note"] = (result.get("note", "") + " Left out of this analysis: " + "; ".join(
        left_out) + ". The parts that need them are not tested: the verdict covers only "
        "the parts listed.").strip()
  if F.peer == "random" and any(r.runner == PEER_RUNNER for r in runs):
    result["note"] = (result.get("note", "") + " The stable-baselines-jax arm is the "
                      "uniform-random stand-in of --peer=random.").strip()
  write_outputs(out_dir, F.claim, arms, data, result, commands)
  print(f"[reproduce {F.claim}] {F.budget} budget: {result['verdict']}; see "
        f"{os.path.join(out_dir, 'table.md')}", flush=True)
  for p in result["parts"]:
    print(f"  {p['part']}: {p['verdict']}", flush=True)
  return 0


if __name__ == "__main__":
  app.run(main)
