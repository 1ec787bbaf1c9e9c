"""Every setting of a run, declared once: name, kind, default, help, who reads it, and the
rule its value must follow.

The command line (experiments/run.py) defines one absl flag per `Setting`; the configs
(`agent.SACConfig`, `ddpg.DDPGConfig`, `loop.LoopConfig`) and the per-member
hyperparameters (`HParams`) validate their values here, so each rule is written once and
a bad value is refused as "NAME=VALUE: must be ..." wherever it comes from. The resume
rules (which settings a resumed run may change, which change array shapes) and the
`--sweep` names (per-member settings, the learning rates `lr` stands for) are derived
from the declaration too.

Pure Python and numpy: importing this module (and validating) imports neither jax nor
absl, nor any other module of the package.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from typing import Any, Callable, Mapping

import numpy as np

KINDS = ("int", "float", "bool", "str", "enum", "ints")
READERS = ("sac", "ddpg", "both", "run")  # "run": the loop, I/O or process setup
# The hidden activations networks.py provides (it maps these names to functions).
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "swish")


@dataclasses.dataclass(frozen=True)
class Rule:
  """What a value must be: `ok(value)` is True, else "NAME=VALUE: must be <allowed>".

  `ok` of a per-member setting is applied to a float64 array (every member at once) and
  returns an array of bools; the first member's value that fails is the one named.
  """
  ok: Callable[[Any], Any]
  allowed: str


def at_least(low: int) -> Rule:
  return Rule(lambda x: x >= low, f">= {low}")


def interval(low: float, high: float, closed: str) -> Rule:
  """low <= x <= high with the ends `closed` says ("[)", "(]", ...)."""
  lo = (lambda x: x >= low) if closed[0] == "[" else (lambda x: x > low)
  hi = (lambda x: x <= high) if closed[1] == "]" else (lambda x: x < high)
  return Rule(lambda x: lo(x) & hi(x), f"in {closed[0]}{low:g}, {high:g}{closed[1]}")


POSITIVE = Rule(lambda x: (x > 0) & np.isfinite(x), "> 0")
NON_NEGATIVE = Rule(lambda x: (x >= 0) & np.isfinite(x), ">= 0")
FINITE = Rule(np.isfinite, "finite")


@dataclasses.dataclass(frozen=True)
class Setting:
  """One setting: a flag of experiments.run (unless `flag` is False) and a config field.

  reads: which learner reads it ("sac", "ddpg", "both"), or "run" (the loop, I/O,
    processes). The other algorithm ignores it (SAC refuses a DDPG-only one that is set).
  per_member: may differ between the members of one state (an HParams field, or `lr`);
    --sweep takes these.
  shape: changes array shapes or the compiled graph (named so in the refusal to resume).
  state: the saved state's arrays depend on it (their shapes, or what they mean): a
    branch (--branch_from) must keep the source run's value.
  resumable: a resumed run may change it.
  learning_rate: one of the learning rates `lr` stands for.
  ddpg_contradiction: why a value other than the default contradicts --algorithm=ddpg.
  """
  name: str
  kind: str
  default: Any
  help: str
  reads: str = "run"
  per_member: bool = False
  shape: bool = False
  state: bool = False
  resumable: bool = False
  rule: Rule | None = None
  choices: tuple[str, ...] = ()
  flag: bool = True
  learning_rate: bool = False
  ddpg_contradiction: str = ""

  def __post_init__(self):
    assert self.kind in KINDS and self.reads in READERS, self
    assert (self.kind == "enum") == bool(self.choices), self

  def reads_for(self, algorithm: str) -> bool:
    """Whether a run of `algorithm` reads this setting."""
    return self.reads in ("both", "run", algorithm)

  def show(self, value: Any) -> str:
    """The value as the refusal names it: 0.5, 128, 'relu', '64,x'."""
    if self.kind == "float" and _is_number(value):
      return f"{float(value):g}"
    if self.kind == "ints" and isinstance(value, (list, tuple)):
      return repr(",".join(str(h) for h in value))
    if self.kind in ("str", "enum") or not _is_number(value):
      return repr(value)
    return str(value)

  def refusal(self, value: Any) -> str | None:
    """"NAME=VALUE: must be ..." if `value` breaks the kind or the rule, else None.

    None is allowed where it is the default (it then means "derived": lr_policy is lr).
    A per-member value may be an [M] array.
    """
    if value is None and self.default is None:
      return None
    try:
      x = _PARSE[self.kind](value)
    except (TypeError, ValueError):
      return f"{self.name}={self.show(value)}: must be {self._kind_text()}"
    if self.choices and x not in self.choices:
      return f"{self.name}={self.show(value)}: must be one of {list(self.choices)}"
    if self.rule is None:
      return None
    ok = np.asarray(self.rule.ok(x))
    if ok.all():
      return None
    bad = value if ok.ndim == 0 else np.ravel(x)[np.flatnonzero(~np.ravel(ok))[0]]
    return f"{self.name}={self.show(bad)}: must be {self.rule.allowed}"

  def _kind_text(self) -> str:
    if self.kind == "ints" and self.rule is not None:
      return self.rule.allowed
    text = dict(int="an integer", float="a number", bool="True or False",
                str="a string", enum=f"one of {list(self.choices)}")[self.kind]
    return f"{text} {self.rule.allowed}" if self.rule is not None else text


def _is_number(x: Any) -> bool:
  return isinstance(x, numbers.Number) and not isinstance(x, bool)


def _as_int(x: Any) -> int:
  if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
    raise TypeError(x)
  return int(x)


def _as_float(x: Any) -> np.ndarray:
  if isinstance(x, (str, bytes, bool, np.bool_)):
    raise TypeError(x)
  return np.asarray(x, np.float64)  # a scalar, or [M] per-member values


def _as_bool(x: Any) -> bool:
  if not isinstance(x, (bool, np.bool_)):
    raise TypeError(x)
  return bool(x)


def _as_str(x: Any) -> str:
  if not isinstance(x, str):
    raise TypeError(x)
  return x


def _as_ints(x: Any) -> tuple[int, ...]:
  """Layer sizes from the command line (['128', '128']) or a config ((128, 128))."""
  if isinstance(x, (str, bytes)) or not isinstance(x, (list, tuple)):
    raise TypeError(x)
  return tuple(int(h) if isinstance(h, str) else _as_int(h) for h in x)


_PARSE = dict(int=_as_int, float=_as_float, bool=_as_bool, str=_as_str, enum=_as_str,
              ints=_as_ints)

_DDPG_LR = ("DDPG's actor and critic learning rates come from --lr_policy and --lr_q "
            "(default --lr)")

# In the order of the flags (and of the lines of a run's flags.txt).
SETTINGS: tuple[Setting, ...] = (
    Setting("env_id", "str", "InvertedPendulum-v5", "gymnasium env id (continuous Box "
            "actions, flat Box observations); 'module:Env-v0' imports module first",
            shape=True, state=True),
    Setting("seed", "int", 0, "base seed: member i uses seed + i (networks, env, eval)",
            state=True),
    Setting("num_seeds", "int", 1, "members: independent runs trained together",
            shape=True, state=True, rule=at_least(1)),
    Setting("total_env_steps", "int", 100_000, "env steps per member", resumable=True,
            rule=at_least(1)),
    Setting("start_steps", "int", 1000, "uniformly random actions for this many steps",
            reads="both", rule=at_least(0)),
    Setting("num_components", "int", 4, "K: Gaussian mixture components of the policy",
            reads="sac", shape=True, state=True, rule=at_least(1)),
    Setting("hidden_sizes", "ints", (128, 128), "hidden layer sizes of V, Q and policy",
            reads="both", shape=True, state=True,
            rule=Rule(lambda hs: len(hs) > 0 and all(h >= 1 for h in hs),
                      "comma-separated positive integers, e.g. 128,128")),
    Setting("activation", "str", "relu", "hidden activation", reads="both", shape=True,
            state=True, rule=Rule(lambda a: a in ACTIVATIONS, f"one of {sorted(ACTIVATIONS)}")),
    Setting("batch_size", "int", 128, "minibatch size", reads="both", shape=True,
            rule=at_least(1)),
    Setting("buffer_size", "int", 1_000_000, "replay capacity per member (transitions)",
            reads="both", shape=True, state=True, rule=at_least(1)),
    Setting("grad_steps", "int", 1, "G: gradient steps per env step", reads="both",
            shape=True, rule=at_least(1)),
    Setting("algorithm", "enum", "sac", "sac: the paper's algorithm (and its options); "
            "ddpg: the paper's baseline (Lillicrap et al.; give "
            "experiments/flags/ddpg.flags for its settings). DDPG ignores SAC-only settings "
            "and says so; contradictions are refused", shape=True, state=True,
            choices=("sac", "ddpg")),
    Setting("lr", "float", 3e-4, "Adam learning rate of all networks (and the temperature)",
            reads="both", per_member=True, rule=POSITIVE),
    Setting("lr_policy", "float", None,
            "learning rate of the policy / actor (default --lr)", reads="both", per_member=True, learning_rate=True, rule=POSITIVE),
    Setting("lr_q", "float", None, "learning rate of Q / the critic (default --lr)",
            reads="both", per_member=True, learning_rate=True, rule=POSITIVE),
    # Per-member hyperparameters without a flag of their own: --lr sets them, --sweep
    # varies them.
    Setting("lr_v", "float", None, "learning rate of V (default --lr)", reads="sac",
            per_member=True, learning_rate=True, rule=POSITIVE, flag=False),
    Setting("lr_alpha", "float", None, "learning rate of the temperature with --auto_alpha "
            "(default --lr)", reads="sac", per_member=True, learning_rate=True,
            rule=POSITIVE, flag=False),
    Setting("expl_noise", "float", 0.1, "DDPG only: std of the Gaussian exploration noise "
            "on the [-1, 1] action", reads="ddpg", per_member=True, rule=NON_NEGATIVE),
    Setting("weight_decay", "float", 1e-2, "DDPG only: L2 weight decay of the critic's "
            "weight matrices", reads="ddpg", per_member=True, rule=NON_NEGATIVE),
    Setting("gamma", "float", 0.99, "discount, in [0, 1)", reads="both", per_member=True,
            rule=interval(0, 1, "[)")),
    Setting("tau", "float", 0.01, "Polyak rate of the target V, in (0, 1]", reads="both",
            per_member=True, rule=interval(0, 1, "(]")),
    Setting("reward_scale", "float", 1.0, "reward scale c (the inverse temperature), > 0",
            reads="both", per_member=True, rule=POSITIVE),
    Setting("alpha", "float", 1.0, "temperature (initial value with --auto_alpha)",
            reads="sac", per_member=True, rule=NON_NEGATIVE),
    Setting("auto_alpha", "bool", False, "learn the temperature toward --target_entropy",
            reads="sac", shape=True,
            ddpg_contradiction="DDPG has no temperature to learn"),
    Setting("target_entropy", "float", None, "target entropy for --auto_alpha "
            "(default -act_dim)", reads="sac", rule=FINITE),
    Setting("policy_gradient", "enum", "likelihood_ratio", "policy gradient "
            "(reparameterized needs K = 1; mixture_reparameterized: any K)", reads="sac",
            shape=True,
            choices=("likelihood_ratio", "reparameterized", "mixture_reparameterized"),
            ddpg_contradiction="DDPG's actor is deterministic and follows dQ/da"),
    Setting("value_network", "bool", True, "the paper's soft value network V with a target "
            "copy; --novalue_network: the value-free critic of SAC 2018b (target Q "
            "networks; needs a reparameterized policy gradient)", reads="sac", shape=True,
            state=True),
    Setting("update_order", "enum", "joint", "joint: every gradient of a step at the same "
            "pre-update params (the paper's code; DDPG's too); sequential: the critic "
            "steps first and the actor's gradient reads the updated critic (Algorithm 2's "
            "lines in print order; the later SAC code bases)", reads="both", shape=True,
            choices=("joint", "sequential")),
    Setting("num_q", "int", 1, "Q networks: 1 (paper) or 2 (twin Q, min in the V target)",
            reads="sac", shape=True, state=True, rule=Rule(lambda q: q in (1, 2), "1 or 2"),
            ddpg_contradiction="DDPG has one critic (twin critics would be TD3)"),
    Setting("reg", "float", 1e-3, "policy regularization of means and log stds",
            reads="sac", per_member=True, rule=NON_NEGATIVE),
    Setting("log_std_min", "float", -5.0, "soft lower bound of the policy's log-stds (the "
            "authors hard-clipped at -20, which float32 cannot represent)", reads="sac",
            shape=True, rule=FINITE),
    Setting("log_std_max", "float", 2.0, "soft upper bound of the policy's log-stds",
            reads="sac", shape=True, rule=FINITE),
    Setting("squash_correction", "enum", "exact", "the tanh squash term of log pi: exact "
            "(the paper's appendix C) or capped, log(1 - tanh(u)^2 + 1e-6) as the authors' "
            "first release computed it (at most 13.8 nats per action dimension)",
            reads="sac", shape=True, choices=("exact", "capped")),
    Setting("obs_transform", "enum", "none", "how every network sees an observation: "
            "none (as the env gives it; the paper) or symlog, sign(x) log(1 + |x|) per "
            "entry (not in the paper; for tasks whose observations reach the thousands, "
            "such as Humanoid-v5's contact forces)", reads="both", shape=True, state=True,
            choices=("none", "symlog")),
    Setting("eval_every", "int", 1000, "env steps between deterministic evaluations",
            rule=at_least(1)),
    Setting("eval_episodes", "int", 10, "episodes per evaluation and member",
            rule=at_least(1)),
    Setting("checkpoint_every", "int", 10_000, "env steps between checkpoints "
            "(0: only at the end and on SIGINT/SIGTERM)", resumable=True,
            rule=Rule(lambda n: n >= 0, ">= 0 (0: only at the end)")),
    Setting("max_to_keep", "int", 2, "checkpoints kept", resumable=True, rule=at_least(1)),
    Setting("keep_every", "int", 0, "also keep every checkpoint whose env step is a multiple "
            "of this, beside the newest --max_to_keep (0: none): states a later branch "
            "(--branch_from) can start from", resumable=True,
            rule=Rule(lambda n: n >= 0, ">= 0 (0: none)")),
    Setting("run_dir", "str", None, "output directory (default runs/<env_id>-<timestamp>)",
            resumable=True),
    Setting("branch_from", "str", None, "start from another run's checkpoint: the source "
            "run's run_dir (its checkpoint at --branch_step is read, never changed); "
            "a new run that shares the source's history (state and metrics.csv rows) up "
            "to that step and trains on from it with this command's settings; those that "
            "define the saved state (env, seeds, --sweep, network shapes, ...) must equal "
            "the source's, but --buffer_size may change (the source's newest transitions "
            "are kept)",
            rule=Rule(lambda path: len(path) > 0, "a run directory (not empty)")),
    Setting("branch_step", "int", None, "with --branch_from: the env step of the source's "
            "checkpoint to start from (one its checkpoints/ holds; keep more with "
            "--max_to_keep)", rule=at_least(1)),
    Setting("overlap", "bool", False, "act with the current policy, then dispatch the G "
            "updates and step the envs while the device runs them: the actions come from "
            "parameters one update behind (off in the paper's flagfiles)", resumable=True),
    Setting("async_envs", "bool", False, "step the members' envs in subprocesses "
            "(gymnasium AsyncVectorEnv); worth it with many members", resumable=True),
    Setting("log_every_s", "float", 5.0, "seconds between progress lines (0: quiet)",
            resumable=True),
    Setting("tensorboard", "bool", False, "also write TensorBoard event files to "
            "<run_dir>/tensorboard (per-member returns and training metrics, per-setting "
            "means); needs tensorboardX: pip install 'sac_jax[tensorboard]'",
            resumable=True),
    Setting("num_devices", "int", 0, "devices the members are spread over (0: all devices, "
            "1: no sharding); must divide the member count", resumable=True,
            rule=Rule(lambda n: n >= 0, ">= 0 (0: all)")),
    Setting("coordinator_address", "str", None, "several processes (hosts): HOST:PORT of "
            "process 0 for jax.distributed.initialize, or 'auto' on a cluster JAX detects "
            "(SLURM, Open MPI, ...); every process runs the same command", resumable=True),
    Setting("num_processes", "int", None, "several processes: how many (with "
            "--coordinator_address=HOST:PORT)", resumable=True),
    Setting("process_id", "int", None, "several processes: this one's index in "
            "[0, num_processes) (with --coordinator_address=HOST:PORT)", resumable=True),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
assert len(BY_NAME) == len(SETTINGS), "a setting is declared twice"


def names(**props: Any) -> tuple[str, ...]:
  """The settings whose fields equal `props` (e.g. resumable=True), in declaration order."""
  return tuple(s.name for s in SETTINGS
               if all(getattr(s, k) == v for k, v in props.items()))


SAC_ONLY = names(reads="sac")
DDPG_ONLY = names(reads="ddpg")
RESUMABLE = names(resumable=True)
SHAPE_CHANGING = names(shape=True)
STATE_DEFINING = names(state=True)
# State-defining, yet a branch (--branch_from) may change it: the replay's capacity (the
# source's newest transitions are moved into the new one: sac_jax.replay.fit).
STATE_A_BRANCH_MAY_CHANGE = ("buffer_size",)


def per_member(algorithm: str) -> tuple[str, ...]:
  """The names --sweep takes for `algorithm`: its HParams fields and `lr`."""
  return tuple(s.name for s in SETTINGS if s.per_member and s.reads_for(algorithm))


def learning_rates(algorithm: str) -> tuple[str, ...]:
  """The HParams learning rates of `algorithm`: what `lr` (and --sweep lr) stands for."""
  return tuple(s.name for s in SETTINGS if s.learning_rate and s.reads_for(algorithm))


def fixed_per_process() -> tuple[str, ...]:
  """Settings that cannot differ within one state: those that change shapes or the graph,
  and the learners' other config-level ones (start_steps, target_entropy)."""
  return tuple(s.name for s in SETTINGS
               if s.shape or (s.reads != "run" and not s.per_member))


# ---------------------------------------------------------------- rules between settings
@dataclasses.dataclass(frozen=True)
class Between:
  """A rule between settings: checked when all of `names` are given (and the run's
  algorithm is `algorithm`, or "both"); `refuse(values)` returns the refusal or None."""
  names: tuple[str, ...]
  refuse: Callable[[Mapping[str, Any]], str | None]
  algorithm: str = "both"


def _start_within_budget(v):
  if v["total_env_steps"] < v["start_steps"]:
    return (f"total_env_steps={v['total_env_steps']} is below start_steps="
            f"{v['start_steps']}: the run would never leave the random-action phase")


def _branch_pair(v):
  if (v["branch_from"] is None) != (v["branch_step"] is None):
    given, missing = (("branch_from", "branch_step") if v["branch_from"] is not None
                      else ("branch_step", "branch_from"))
    return (f"{given}={v[given]!r} given without {missing}: a branch names the source "
            "run (--branch_from=RUN_DIR) and the env step of its checkpoint to start "
            "from (--branch_step=STEP)")


def _branch_within_budget(v):
  if v["branch_step"] is not None and v["total_env_steps"] <= v["branch_step"]:
    return (f"total_env_steps={v['total_env_steps']} is not above branch_step="
            f"{v['branch_step']}: a branch trains on from its source's step, so its "
            "budget must be larger")


def _batch_fits(v):
  if v["batch_size"] > v["buffer_size"]:
    return (f"batch_size={v['batch_size']} is larger than buffer_size={v['buffer_size']}: "
            "the batch must fit in the replay buffer")


def _reparameterized_is_one_gaussian(v):
  if v["policy_gradient"] == "reparameterized" and v["num_components"] != 1:
    return (f"policy_gradient='reparameterized' needs num_components=1, got "
            f"{v['num_components']} (use likelihood_ratio or mixture_reparameterized for a "
            "mixture)")


def _likelihood_ratio_needs_v(v):
  if not v["value_network"] and v["policy_gradient"] == "likelihood_ratio":
    return ("policy_gradient='likelihood_ratio' needs the V network as its baseline, but "
            "value_network=False; use value_network=True, or "
            "policy_gradient='reparameterized' (K = 1) or 'mixture_reparameterized'")


def _log_std_bounds_ordered(v):
  if not v["log_std_min"] < v["log_std_max"]:
    return (f"log_std_min={v['log_std_min']:g}, log_std_max={v['log_std_max']:g}: must "
            "be finite with log_std_min < log_std_max")


def _auto_alpha_starts_positive(v):
  if v["auto_alpha"]:
    alpha = np.ravel(np.asarray(v["alpha"], np.float64))
    if np.any(alpha <= 0):
      return (f"alpha={alpha[alpha <= 0][0]:g}: must be > 0 (the initial temperature "
              "with auto_alpha)")


def _ddpg_only_unset(v):
  for name in DDPG_ONLY:  # at its default it changes nothing (flags.txt holds them all)
    if name in v and v[name] != BY_NAME[name].default:
      return (f"--{name} applies to --algorithm=ddpg only; this run is SAC (drop the flag, "
              "or add --algorithm=ddpg)")


def _no_ddpg_contradiction(v):
  for s in SETTINGS:
    if s.ddpg_contradiction and s.name in v and v[s.name] != s.default:
      return (f"--algorithm=ddpg contradicts --{s.name}={v[s.name]}: "
              f"{s.ddpg_contradiction} (drop --{s.name}, or the flagfile that sets it)")


def _distributed(v):
  address, n, pid = v["coordinator_address"], v["num_processes"], v["process_id"]
  if not address:
    if n not in (None, 1) or pid not in (None, 0):
      return (f"num_processes={n}, process_id={pid} given without coordinator_address: "
              "several processes need --coordinator_address=HOST:PORT (the address of "
              "process 0), or --coordinator_address=auto on a cluster JAX detects (SLURM, "
              "Open MPI, Kubernetes, TPU)")
    return None
  if address == "auto":
    return None
  if not re.fullmatch(r"[^\s:]+:\d{1,5}", address) or not (
      0 < int(address.rsplit(":", 1)[1]) < 65536):
    return (f"coordinator_address={address!r}: must be HOST:PORT (e.g. 10.0.0.1:1234, the "
            "host of process 0 and a free port) or auto")
  if n is None or n < 1:
    return (f"num_processes={n}: with coordinator_address, give the number of processes "
            "(>= 1)")
  if pid is None or not 0 <= pid < n:
    return f"process_id={pid}: must be in [0, {n - 1}] for num_processes={n}"
  return None


BETWEEN: tuple[Between, ...] = (
    Between(("total_env_steps", "start_steps"), _start_within_budget),
    Between(("batch_size", "buffer_size"), _batch_fits),
    Between(("branch_from", "branch_step"), _branch_pair),
    Between(("total_env_steps", "branch_step"), _branch_within_budget),
    Between(("policy_gradient", "num_components"), _reparameterized_is_one_gaussian, "sac"),
    Between(("value_network", "policy_gradient"), _likelihood_ratio_needs_v, "sac"),
    Between(("log_std_min", "log_std_max"), _log_std_bounds_ordered, "sac"),
    Between(("auto_alpha", "alpha"), _auto_alpha_starts_positive, "sac"),
    Between((), _ddpg_only_unset, "sac"),
    Between((), _no_ddpg_contradiction, "ddpg"),
    Between(("coordinator_address", "num_processes", "process_id"), _distributed),
)


def refusal(values: Mapping[str, Any]) -> str | None:
  """The first rule `values` break, as one line; None if they follow every rule.

  `values` maps setting names to values (any subset; other keys are ignored; a per-member
  setting may be an [M] array). `values["algorithm"]` (default "sac") decides which
  settings are read: the rules of settings only the other algorithm reads are skipped.
  Each setting's own rule first, in declaration order, then the rules between settings
  whose names are all given.
  """
  algorithm = values.get("algorithm", "sac")
  for s in SETTINGS:
    if s.name in values and s.reads_for(algorithm):
      why = s.refusal(values[s.name])
      if why:
        return why
  for rule in BETWEEN:
    if rule.algorithm in ("both", algorithm) and all(n in values for n in rule.names):
      why = rule.refuse(values)
      if why:
        return why
  return None


def validate(values: Mapping[str, Any]) -> None:
  """Raises ValueError with `refusal(values)`: "NAME=VALUE: must be ...". No compute."""
  why = refusal(values)
  if why:
    raise ValueError(why)


def config_values(config: Any, algorithm: str | None = None) -> dict[str, Any]:
  """The settings among a config dataclass's fields (plus the learner's algorithm), for
  `validate`."""
  out = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
         if f.name in BY_NAME}
  if algorithm is not None:
    out["algorithm"] = algorithm
  return out


# ---------------------------------------------------------------- configs from settings
def fields_from(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
  """The fields of the config dataclass `cls` that are settings, with their values from
  `values` (a field missing there keeps the config's default: a run.json from an older
  version lacks the settings added since; fields that are no settings, such as
  LoopConfig's num_members and member_seeds, the caller derives). Which config a run's
  learner takes is `sac_jax.learners.config_from`'s."""
  return {f.name: values[f.name] for f in dataclasses.fields(cls)
          if f.name in values and f.name in BY_NAME}
