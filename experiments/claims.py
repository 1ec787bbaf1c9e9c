"""The claims of the SAC paper that `experiments.reproduce` reruns: what each one trains.

A claim is a list of arms (plan); an arm is a group of seeds, the members of one run; a run
is one process, named by what it trains, so that claims share runs (the paper configuration
of a task is the SAC arm of five claims). What each claim then tests is
experiments/claim_analysis.py; how a run is trained at a budget, experiments/reproduce.py.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from absl import flags

from sac_jax import settings as S

FLAGS_DIR = os.path.join("experiments", "flags")
TASKS = ("halfcheetah", "hopper", "walker2d", "ant")
# The tasks claim's bars: the mean final return over seeds at 300k env steps.
THRESHOLDS = dict(halfcheetah=3500.0, hopper=1500.0, walker2d=1000.0, ant=1000.0)
CLAIMS = ("tasks", "sac_vs_ddpg", "seeds", "hard", "grad_steps", "components",
          "mixture_gradients", "overlap", "parity", "settings")
# --tasks left at its default: these claims run on these tasks only (settings: the task
# whose bar the tasks claim does not meet).
CLAIM_TASKS = dict(parity=("halfcheetah", "hopper"), grad_steps=("halfcheetah",),
                   settings=("walker2d",))
# What reproduce.run_flags sets for every run (the budget's protocol, the seeds, where it
# writes) or --tasks chooses: not a --setting of the settings claim.
PROTOCOL_FLAGS = ("env_id", "seed", "num_seeds", "run_dir", "log_every_s",
                  "total_env_steps", "buffer_size", "eval_every", "eval_episodes",
                  "checkpoint_every", "sweep", "flagfile")
DDPG = f"--flagfile={FLAGS_DIR}/ddpg.flags"
MODERN = f"--flagfile={FLAGS_DIR}/modern.flags"
SAC_RUNNER, PEER_RUNNER = "experiments.run", "experiments.peer_learning"


@dataclasses.dataclass(frozen=True)
class Run:
  """One process (`runner`: experiments.run, or experiments.peer_learning for a peer); its
  name is its run directory (unique across claims)."""
  name: str
  task: str
  flags: tuple[str, ...] = ()
  length: str = "long"   # "long" or "short": reproduce.CPU_STEPS, the cpu budget
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


def key(a: Arm) -> str:
  """An arm's key in an analysis: "<panel>/<label>", or its label where it has no panel."""
  return f"{a.panel}/{a.label}" if a.panel else a.label
