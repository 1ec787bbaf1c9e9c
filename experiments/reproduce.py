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
Each claim's arms: experiments/claims.py; what it tests: experiments/claim_analysis.py;
its table and figure: experiments/claim_report.py; this module runs them.

Every run is an `experiments.run` process (the parity claim's peer: an
`experiments.peer_learning` process, resumable per seed) with its own run directory
<runs_dir>/<budget>/<run>, so rerunning the same command resumes unfinished runs from their
checkpoints and skips finished ones. Outputs in --out (default
<runs_dir>/<budget>/claims/<claim>): figure.png, table.md, verdict.json, returns.csv (per
seed: final, AUC, max) and curves.csv (every evaluation); and for each run read from its
run directory (not from the archive) <run>/metrics.csv, the run's own, every column (the
training metrics: `python -m experiments.plot <out>/<run> --metrics=train_q_loss,...`).

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
import os
import shutil
import subprocess
import sys
import time
from typing import Sequence

from absl import flags

from experiments import claim_analysis
from experiments import claim_report
from experiments import claims
from experiments import cli
from experiments import run_archive

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHIVE = os.path.join(REPO, "docs", "reproduction", "runs")

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
SMOKE = ["--total_env_steps=300", "--start_steps=100", "--batch_size=16",
         "--hidden_sizes=16,16", "--eval_every=100", "--eval_episodes=1",
         "--buffer_size=300", "--checkpoint_every=0"]
# The peer's smoke budget (experiments.peer_learning): SMOKE's steps, evaluations and start.
PEER_SMOKE = ["--total_env_steps=300", "--learning_starts=100", "--eval_every=100",
              "--eval_episodes=1"]

flags.DEFINE_enum("claim", None, claims.CLAIMS, "the claim to rerun")
flags.DEFINE_enum("budget", "cpu", BUDGETS, "smoke | cpu | paper")
flags.DEFINE_string("runs_dir", "runs/reproduce", "where the runs go (<runs_dir>/<budget>/"
                    "<run>; claims share runs with equal flags)")
flags.DEFINE_string("out", None, "figure, table and verdict (default: <runs_dir>/<budget>/"
                    "claims/<claim>)")
flags.DEFINE_integer("first_seed", FIRST_SEED, "arms use seeds first_seed .. first_seed + "
                     "seeds - 1")
flags.DEFINE_integer("seeds", None, f"seeds per arm (default {SEEDS}; 2 for smoke)")
flags.DEFINE_list("tasks", list(claims.TASKS), "tasks of the per-task claims (default all; "
                  + "; ".join(f"{c}: {', '.join(t)}" for c, t in claims.CLAIM_TASKS.items())
                  + ")")
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



def _task_flag(task: str, name: str) -> str:
  with open(os.path.join(REPO, claims.FLAGS_DIR, f"{task}.flags")) as f:
    for line in f:
      if line.startswith(f"--{name}="):
        return line.split("=", 1)[1].strip()
  raise ValueError(f"{task}.flags sets no --{name}")


def target_steps(budget: str, run: claims.Run) -> int:
  """The env steps a run trains per seed at a budget."""
  if budget == "smoke":
    smoke = PEER_SMOKE if run.runner == claims.PEER_RUNNER else SMOKE
    return int(next(f for f in smoke if f.startswith("--total_env_steps=")).split("=")[1])
  if budget == "cpu":
    return CPU_STEPS[run.length]
  return int(_task_flag(run.task, "total_env_steps"))


def run_dir_name(run: claims.Run, first_seed: int) -> str:
  """A run's directory under <runs_dir>/<budget>: its name; more seeds for it trained later
  (another --first_seed) go to <name>-seed<first_seed> and join the same archived run."""
  return run.name if first_seed == FIRST_SEED else f"{run.name}-seed{first_seed}"


def run_flags(budget: str, run: claims.Run, seed: int, seeds: int, run_dir: str,
              peer: str = "sbx") -> list[str]:
  """The full command line of one run (after `python -m <run.runner>`)."""
  steps = target_steps(budget, run)
  if run.runner == claims.PEER_RUNNER:
    base = [f"--env_id={_task_flag(run.task, 'env_id')}", *run.flags, f"--seed={seed}",
            f"--num_seeds={seeds}", f"--run_dir={run_dir}", f"--peer={peer}"]
    if budget == "smoke":
      return base + PEER_SMOKE
    return base + [f"--total_env_steps={steps}", "--eval_every=5000", "--eval_episodes=5"]
  base = [f"--flagfile={claims.FLAGS_DIR}/{run.task}.flags", *run.flags,
          f"--seed={seed}", f"--num_seeds={seeds}", f"--run_dir={run_dir}",
          "--log_every_s=60"]
  if budget == "smoke":
    return base + SMOKE
  return base + [f"--total_env_steps={steps}", f"--buffer_size={min(steps, 1_000_000)}",
                 "--eval_every=5000", "--eval_episodes=5",
                 f"--checkpoint_every={max(min(steps // 10, CHECKPOINT_EVERY_MAX), 5000)}"]



def run_status(run: claims.Run, run_dir: str, budget: str, first_seed: int, seeds: int,
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
           run.runner != claims.PEER_RUNNER else
           "under way" if any(reached.values()) or os.path.exists(run_dir) else "not started")
  ckpt_dir = os.path.join(run_dir, "checkpoints")
  names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
  if run.runner == claims.PEER_RUNNER:   # seed_<s>.pkl after each evaluation of a partial seed
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
  if st["runner"] == claims.PEER_RUNNER:   # seeds train one after another
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


def _complete(run: claims.Run, run_dir: str, budget: str, first_seed: int, seeds: int
              ) -> bool:
  return run_status(run, run_dir, budget, first_seed, seeds)["state"] == "complete"


def archive_run(archive: str, run: claims.Run, run_dir: str, argv: Sequence[str],
                command: str, target: int) -> tuple[str, list[int]]:
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


def untested(claim: str | None, tasks: Sequence[str] | None, planned: Sequence[claims.Arm],
             arms: Sequence[claims.Arm]) -> list[str]:
  """What a subset leaves untested, said in the outputs: the claim's own tasks that --tasks
  (given: tasks, else None) drops, and the planned arms that --arms drops. The settings
  claim has no tasks of its own (walker2d is only where it looks by default): choosing
  another task leaves nothing of it out."""
  out = []
  if claim and claim != "settings" and tasks is not None and (gone := [
      t for t in claims.CLAIM_TASKS.get(claim, claims.TASKS) if t not in tasks]):
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
    raise cli.UsageError(f"unexpected argument(s) {argv[1:]}")
  F = flags.FLAGS
  if F.claim is None and not F.status:
    raise cli.UsageError(f"--claim is required: one of {', '.join(claims.CLAIMS)}")
  names = [F.claim] if F.claim else list(claims.CLAIMS)
  if F.claim == "settings" and not F.setting:
    raise cli.UsageError("--claim=settings needs one --setting=NAME=VALUE per arm, e.g. "
                         "--setting=tau=0.005 --setting=batch_size=256")
  if F.setting and F.claim != "settings":
    raise cli.UsageError(f"--setting={F.setting[0]}: only --claim=settings takes "
                         "--setting")
  try:
    arms = [a for c in names for a in claims.plan(
        c, F.tasks if F["tasks"].present else claims.CLAIM_TASKS.get(c, claims.TASKS),
        F.setting)]
  except ValueError as e:
    raise cli.UsageError(str(e)) from None
  planned = arms
  if F.arms:
    unknown = set(F.arms) - {a.label for a in arms}
    if unknown:
      raise cli.UsageError(f"--arms {sorted(unknown)}: this claim's arms are "
                           f"{sorted({a.label for a in arms})}")
    arms = [a for a in arms if a.label in F.arms]
  left_out = untested(F.claim, F.tasks if F["tasks"].present else None, planned, arms)
  seeds = F.seeds or (2 if F.budget == "smoke" else SEEDS)
  if seeds < 2:
    raise cli.UsageError(f"--seeds={seeds}: a verdict needs 2 or more seeds per arm")
  if F.up_to is not None and F.up_to <= 0:
    raise cli.UsageError(f"--up_to={F.up_to}: must be a positive number of env steps "
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
        and not (r.runner == claims.PEER_RUNNER and F.peer == "random")):
      path, held = archive_run(archive, r, run_dir, argvs[r], commands[-1],
                               target_steps(F.budget, r))
      print(f"[reproduce {F.claim}] run {r.name} archived in "
            f"{os.path.relpath(path, REPO)} (seeds {_ranges(held)})", flush=True)
  missing = [os.path.basename(run_dirs[r]) for r in runs if r not in sources and
             not os.path.exists(os.path.join(run_dirs[r], "metrics.csv"))]
  if missing:
    raise cli.UsageError(
        f"--analyze_only: no metrics.csv in {base} for run(s) {', '.join(missing)}: run "
        "the claim without --analyze_only, or leave those arms out with --arms/--tasks")
  data = {claims.key(a): claim_analysis.read_arm(sources.get(a.run, run_dirs[a.run]), want)
          for a in arms}
  ends = {a.run.name: int(data[claims.key(a)][0][-1]) for a in arms
          if len(data[claims.key(a)][0])}
  data = {k: claim_analysis.cut_at(*d, F.up_to) for k, d in data.items()}
  if F.up_to is not None and (empty := [k for k, d in data.items() if not len(d[0])]):
    raise cli.UsageError(f"--up_to={F.up_to}: arm(s) {', '.join(empty)} have no "
                         f"evaluation at or before {F.up_to:,} env steps")
  result = claim_analysis.analyze(F.claim, arms, data, F.budget)
  claim_analysis.mark_cut_and_interim(result, F.up_to, claim_analysis.interim_runs(
      [run_status(r, run_dirs[r], F.budget, F.first_seed, seeds) for r in runs
       if r not in sources], F.up_to), ends)
  if left_out:
    result["note"] = (result.get("note", "") + " Left out of this analysis: " + "; ".join(
        left_out) + ". The parts that need them are not tested: the verdict covers only "
        "the parts listed.").strip()
  if F.peer == "random" and any(r.runner == claims.PEER_RUNNER for r in runs):
    result["note"] = (result.get("note", "") + " The stable-baselines-jax arm is the "
                      "uniform-random stand-in of --peer=random.").strip()
  claim_report.write_outputs(out_dir, F.claim, arms, data, result, commands)
  # A run read from its run directory, not the archive, keeps its whole metrics.csv (the
  # training metrics too) in the outputs: the reading outlives the machine that trained it.
  for r in runs:
    if r not in sources:
      kept = os.path.join(out_dir, os.path.basename(run_dirs[r]))
      os.makedirs(kept, exist_ok=True)
      shutil.copyfile(os.path.join(run_dirs[r], "metrics.csv"),
                      os.path.join(kept, "metrics.csv"))
  print(f"[reproduce {F.claim}] {F.budget} budget: {result['verdict']}; see "
        f"{os.path.join(out_dir, 'table.md')}", flush=True)
  for p in result["parts"]:
    print(f"  {p['part']}: {p['verdict']}", flush=True)
  return 0


if __name__ == "__main__":
  cli.run(main)
