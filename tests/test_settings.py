"""sac_jax.settings, the one declaration of every setting: the CLI's flags are derived
from it (names, kinds, defaults, help), so are the resume rules and the --sweep names
(written out literally here, as a guard); every rule refuses a bad value naming it and
what is allowed, and accepts its boundary; the configs, HParams and the CLI all refuse
through these rules; validation needs neither jax nor absl."""

import dataclasses
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

from sac_jax import settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lib(name):
  return importlib.import_module(f"sac_jax.{name}")


def defaults(**changes):
  return {**{s.name: s.default for s in settings.SETTINGS}, **changes}


# ---------------------------------------------------------------- the flags
def test_every_setting_with_a_flag_is_one_flag_with_its_kind_default_and_help():
  from absl import flags
  from experiments import run
  names = [s.name for s in settings.SETTINGS if s.flag]
  # In declaration order (the order of flags.txt), --sweep (the CLI's own) after
  # --tensorboard, where it always was.
  at = names.index("tensorboard") + 1
  assert run.our_flags() == names[:at] + ["sweep"] + names[at:]
  parsers = dict(int="IntegerParser", float="FloatParser", bool="BooleanParser",
                 str="ArgumentParser", enum="EnumParser", ints="ListParser")
  for s in settings.SETTINGS:
    if not s.flag:
      assert s.name not in flags.FLAGS, s.name
      continue
    f = flags.FLAGS[s.name]
    # absl prefixes an enum's choices to its help.
    prefix = f"<{'|'.join(s.choices)}>: " if s.kind == "enum" else ""
    assert f.help == prefix + s.help, s.name
    assert type(f.parser).__name__ == parsers[s.kind], s.name
    want = [str(h) for h in s.default] if s.kind == "ints" else s.default
    assert f.default == want, s.name
    if s.kind == "enum":
      assert f.parser.enum_values == list(s.choices)


def test_flags_txt_and_run_json_keep_their_format():
  """flags.txt: one --name=value line per flag in flag order (None and an empty --sweep
  left out); run.json: the flag values, hidden_sizes as the strings absl parses."""
  from experiments import run
  v = run.flag_values()  # the defaults (nothing parsed in this process)
  assert v == {**{s.name: s.default for s in settings.SETTINGS if s.flag},
               "hidden_sizes": ["128", "128"], "sweep": []}
  lines = run.flagfile_text(v).splitlines()
  assert lines[0].startswith("# Reproduces this run")
  assert lines[1:5] == ["--env_id=InvertedPendulum-v5", "--seed=0", "--num_seeds=1",
                        "--total_env_steps=100000"]
  for line in ("--hidden_sizes=128,128", "--lr=0.0003", "--noauto_alpha", "--value_network",
               "--policy_gradient=likelihood_ratio", "--log_std_min=-5.0", "--gamma=0.99"):
    assert line in lines, line
  assert len(lines) == 1 + sum(s.flag and s.default is not None for s in settings.SETTINGS)
  assert run._jsonable(v)["hidden_sizes"] == ["128", "128"]


# ---------------------------------------------------------------- derived sets
def test_derived_sets_are_the_expected_names():
  assert set(settings.SAC_ONLY) == {
      "num_components", "policy_gradient", "num_q", "auto_alpha", "target_entropy", "alpha",
      "reg", "log_std_min", "log_std_max", "value_network", "lr_v", "lr_alpha",
      "squash_correction"}
  assert set(settings.DDPG_ONLY) == {"expl_noise", "weight_decay"}
  assert set(settings.RESUMABLE) == {
      "total_env_steps", "checkpoint_every", "max_to_keep", "keep_every", "run_dir",
      "async_envs", "overlap", "log_every_s", "num_devices", "coordinator_address",
      "num_processes", "process_id", "tensorboard"}
  assert set(settings.SHAPE_CHANGING) == {
      "env_id", "num_seeds", "num_components", "hidden_sizes", "activation", "batch_size",
      "buffer_size", "grad_steps", "policy_gradient", "num_q", "auto_alpha", "log_std_min",
      "log_std_max", "algorithm", "value_network", "update_order", "squash_correction",
      "obs_transform"}
  assert set(settings.per_member("sac")) == {
      "reward_scale", "alpha", "tau", "gamma", "reg", "lr", "lr_policy", "lr_q", "lr_v",
      "lr_alpha"}
  assert set(settings.per_member("ddpg")) == {
      "reward_scale", "tau", "gamma", "expl_noise", "weight_decay", "lr", "lr_policy",
      "lr_q"}
  assert settings.learning_rates("sac") == ("lr_policy", "lr_q", "lr_v", "lr_alpha")
  assert settings.learning_rates("ddpg") == ("lr_policy", "lr_q")
  assert set(settings.fixed_per_process()) == set(settings.SHAPE_CHANGING) | {
      "start_steps", "target_entropy"}
  assert [s.name for s in settings.SETTINGS if not s.flag] == ["lr_v", "lr_alpha"]
  assert {s.name for s in settings.SETTINGS if s.ddpg_contradiction} == {
      "auto_alpha", "num_q", "policy_gradient"}


def test_hparams_fields_are_the_per_member_settings_and_configs_share_their_defaults():
  from sac_jax import agent, ddpg, loop
  assert set(agent.HParams._fields) == set(settings.per_member("sac")) - {"lr"}
  assert set(ddpg.DDPGHParams._fields) == set(settings.per_member("ddpg")) - {"lr"}
  # SACConfig's defaults are the CLI's (DDPGConfig has Lillicrap et al.'s on purpose).
  for f in dataclasses.fields(agent.SACConfig):
    assert f.default == settings.BY_NAME[f.name].default, f.name
  assert set(settings.fields_from(loop.LoopConfig, defaults())) == {
      "env_id", "seed", "total_env_steps", "eval_every", "eval_episodes", "async_envs",
      "overlap", "run_dir", "checkpoint_every", "max_to_keep", "log_every_s", "num_devices",
      "branch_from", "branch_step", "keep_every"}
  assert {f.name for f in dataclasses.fields(loop.LoopConfig)} - set(settings.BY_NAME) == {
      "num_members", "title", "member_columns", "member_seeds"}


# ---------------------------------------------------------------- each setting's rule
# (setting, a bad value, the refusal, values at the boundary that are accepted)
RULES = [
    ("num_seeds", 0, "num_seeds=0: must be >= 1", [1]),
    ("total_env_steps", 0, "total_env_steps=0: must be >= 1", [1]),
    ("start_steps", -1, "start_steps=-1: must be >= 0", [0]),
    ("num_components", 0, "num_components=0: must be >= 1", [1]),
    ("hidden_sizes", ["64", "x"], "hidden_sizes='64,x': must be comma-separated positive "
     "integers, e.g. 128,128", [["1"], (1, 1)]),
    ("hidden_sizes", (0, 4), "hidden_sizes='0,4': must be comma-separated positive", []),
    ("hidden_sizes", [], "hidden_sizes='': must be comma-separated positive", []),
    ("activation", "relux", "activation='relux': must be one of ['elu', 'gelu', 'relu', "
     "'swish', 'tanh']", ["swish"]),
    ("batch_size", 0, "batch_size=0: must be >= 1", [1]),
    ("buffer_size", 0, "buffer_size=0: must be >= 1", [1]),
    ("grad_steps", 0, "grad_steps=0: must be >= 1", [1]),
    ("algorithm", "td3", "algorithm='td3': must be one of ['sac', 'ddpg']", ["ddpg"]),
    ("lr", 0.0, "lr=0: must be > 0", [1e-30]),
    ("lr", float("inf"), "lr=inf: must be > 0", []),
    ("lr_policy", -1e-3, "lr_policy=-0.001: must be > 0", [1e-30, None]),
    ("lr_q", 0.0, "lr_q=0: must be > 0", [1e-30, None]),
    ("lr_v", 0.0, "lr_v=0: must be > 0", [1e-30, None]),
    ("lr_alpha", 0.0, "lr_alpha=0: must be > 0", [1e-30, None]),
    ("expl_noise", -0.1, "expl_noise=-0.1: must be >= 0", [0.0]),
    ("weight_decay", -1.0, "weight_decay=-1: must be >= 0", [0.0]),
    ("gamma", 1.0, "gamma=1: must be in [0, 1)", [0.0, 0.999999]),
    ("gamma", -0.1, "gamma=-0.1: must be in [0, 1)", []),
    ("tau", 0.0, "tau=0: must be in (0, 1]", [1e-30, 1.0]),
    ("tau", 1.5, "tau=1.5: must be in (0, 1]", []),
    ("reward_scale", -1.0, "reward_scale=-1: must be > 0", [1e-30, 3e38]),
    ("alpha", -1.0, "alpha=-1: must be >= 0", [0.0]),
    ("target_entropy", float("nan"), "target_entropy=nan: must be finite", [-1e6, None]),
    ("policy_gradient", "ppo", "policy_gradient='ppo': must be one of ['likelihood_ratio', "
     "'reparameterized', 'mixture_reparameterized']", ["mixture_reparameterized"]),
    ("update_order", "critic_first", "update_order='critic_first': must be one of "
     "['joint', 'sequential']", ["joint", "sequential"]),
    ("squash_correction", "capped_1e-6", "squash_correction='capped_1e-6': must be one of "
     "['exact', 'capped']", ["exact", "capped"]),
    ("obs_transform", "log", "obs_transform='log': must be one of ['none', 'symlog']",
     ["none", "symlog"]),
    ("num_q", 3, "num_q=3: must be 1 or 2", [1, 2]),
    ("num_q", 0, "num_q=0: must be 1 or 2", []),
    ("reg", -1e-3, "reg=-0.001: must be >= 0", [0.0]),
    ("log_std_min", float("-inf"), "log_std_min=-inf: must be finite", [-20.0]),
    ("log_std_max", float("nan"), "log_std_max=nan: must be finite", [20.0]),
    ("eval_every", 0, "eval_every=0: must be >= 1", [1]),
    ("eval_episodes", 0, "eval_episodes=0: must be >= 1", [1]),
    ("checkpoint_every", -1, "checkpoint_every=-1: must be >= 0 (0: only at the end)", [0]),
    ("max_to_keep", 0, "max_to_keep=0: must be >= 1", [1]),
    ("keep_every", -1, "keep_every=-1: must be >= 0 (0: none)", [0, 1]),
    ("branch_from", "", "branch_from='': must be a run directory (not empty)", ["r", None]),
    ("branch_step", 0, "branch_step=0: must be >= 1", [1, None]),
    ("num_devices", -1, "num_devices=-1: must be >= 0 (0: all)", [0]),
    # The kind comes first: the declared type, with the rule in the words.
    ("num_components", 1.5, "num_components=1.5: must be an integer >= 1", []),
    ("auto_alpha", "yes", "auto_alpha='yes': must be True or False", [True, False]),
    ("gamma", "0.9", "gamma='0.9': must be a number in [0, 1)", []),
    ("env_id", 3, "env_id=3: must be a string", ["Pendulum-v1"]),
]


def test_every_rule_is_exercised():
  assert {s.name for s in settings.SETTINGS if s.rule or s.choices} <= {r[0] for r in RULES}


@pytest.mark.parametrize("name, bad, message, ok", RULES,
                         ids=[f"{r[0]}={r[1]!r}" for r in RULES])
def test_each_rule_refuses_naming_the_value_and_accepts_its_boundary(name, bad, message,
                                                                      ok):
  algorithm = "ddpg" if name in settings.DDPG_ONLY else "sac"
  with pytest.raises(ValueError) as e:
    settings.validate({"algorithm": algorithm, name: bad})
  assert str(e.value).startswith(message), str(e.value)
  for value in ok:
    settings.validate({"algorithm": algorithm, name: value})


def test_per_member_values_are_checked_member_by_member():
  """[M] arrays (HParams): the first member's value that breaks the rule is named."""
  h = {"gamma": np.array([0.9, 1.0, 1.5], np.float32), "algorithm": "sac"}
  with pytest.raises(ValueError, match=r"^gamma=1: must be in \[0, 1\)$"):
    settings.validate(h)
  settings.validate({"gamma": np.array([0.0, 0.5], np.float32), "lr_q": np.ones(2)})


# ---------------------------------------------------------------- rules between settings
# (values, the refusal (None: accepted)); each rule at its boundary both ways.
BETWEEN = [
    (dict(total_env_steps=500, start_steps=1000), "total_env_steps=500 is below "
     "start_steps=1000: the run would never leave the random-action phase"),
    (dict(total_env_steps=1000, start_steps=1000), None),
    (dict(batch_size=256, buffer_size=100), "batch_size=256 is larger than "
     "buffer_size=100: the batch must fit in the replay buffer"),
    (dict(batch_size=100, buffer_size=100), None),
    (dict(branch_from="runs/a", branch_step=None), "branch_from='runs/a' given without "
     "branch_step: a branch names the source run (--branch_from=RUN_DIR) and the env step "
     "of its checkpoint to start from (--branch_step=STEP)"),
    (dict(branch_from=None, branch_step=5), "branch_step=5 given without branch_from"),
    (dict(branch_from=None, branch_step=None), None),
    (dict(total_env_steps=100, branch_step=100), "total_env_steps=100 is not above "
     "branch_step=100: a branch trains on from its source's step"),
    (dict(total_env_steps=101, branch_step=100), None),
    (dict(total_env_steps=1, branch_step=None), None),
    (dict(policy_gradient="reparameterized", num_components=4),
     "policy_gradient='reparameterized' needs num_components=1, got 4"),
    (dict(policy_gradient="reparameterized", num_components=1), None),
    (dict(value_network=False, policy_gradient="likelihood_ratio"),
     "policy_gradient='likelihood_ratio' needs the V network as its baseline"),
    (dict(value_network=False, policy_gradient="mixture_reparameterized"), None),
    (dict(log_std_min=2.0, log_std_max=2.0), "log_std_min=2, log_std_max=2: must be finite "
     "with log_std_min < log_std_max"),
    (dict(log_std_min=1.99, log_std_max=2.0), None),
    (dict(auto_alpha=True, alpha=0.0), "alpha=0: must be > 0 (the initial temperature with "
     "auto_alpha)"),
    (dict(auto_alpha=True, alpha=np.array([1.0, 0.0])), "alpha=0: must be > 0"),
    (dict(auto_alpha=True, alpha=1e-30), None),
    (dict(auto_alpha=False, alpha=0.0), None),
    (dict(expl_noise=0.3),
     "--expl_noise applies to --algorithm=ddpg only; this run is SAC"),
    (dict(weight_decay=0.0), "--weight_decay applies to --algorithm=ddpg only"),
    (dict(expl_noise=0.1, weight_decay=1e-2), None),  # at their defaults: nothing set
    (dict(algorithm="ddpg", auto_alpha=True), "--algorithm=ddpg contradicts "
     "--auto_alpha=True: DDPG has no temperature to learn (drop --auto_alpha, or the "
     "flagfile that sets it)"),
    (dict(algorithm="ddpg", num_q=2), "--algorithm=ddpg contradicts --num_q=2"),
    (dict(algorithm="ddpg", policy_gradient="reparameterized"),
     "--algorithm=ddpg contradicts --policy_gradient=reparameterized"),
    (dict(algorithm="ddpg", auto_alpha=False, num_q=1, policy_gradient="likelihood_ratio",
          num_components=0, expl_noise=0.3), None),  # SAC's rules do not apply to DDPG
    (dict(coordinator_address="localhost", num_processes=None, process_id=None),
     "coordinator_address='localhost': must be HOST:PORT"),
    (dict(coordinator_address="localhost:1234", num_processes=None, process_id=None),
     "num_processes=None: with coordinator_address, give the number of processes (>= 1)"),
    (dict(coordinator_address="localhost:1234", num_processes=2, process_id=2),
     "process_id=2: must be in [0, 1] for num_processes=2"),
    (dict(coordinator_address=None, num_processes=2, process_id=1),
     "num_processes=2, process_id=1 given without coordinator_address"),
    (dict(coordinator_address="localhost:1234", num_processes=2, process_id=1), None),
    (dict(coordinator_address="auto", num_processes=None, process_id=None), None),
    (dict(coordinator_address=None, num_processes=1, process_id=0), None),
]


def test_every_rule_between_settings_is_exercised():
  covered = set()
  for values, message in BETWEEN:
    for rule in settings.BETWEEN:
      if (rule.algorithm in ("both", values.get("algorithm", "sac"))
          and all(n in values for n in rule.names) and rule.refuse(values)):
        covered.add(rule.refuse)
  assert covered == {rule.refuse for rule in settings.BETWEEN}


@pytest.mark.parametrize(
    "values, message", BETWEEN,
    ids=[",".join(f"{k}={v}" for k, v in b[0].items()) for b in BETWEEN])
def test_rules_between_settings(values, message):
  if message is None:
    settings.validate(values)
    return
  with pytest.raises(ValueError) as e:
    settings.validate(values)
  assert str(e.value).startswith(message), str(e.value)


def test_every_default_is_valid():
  settings.validate(defaults())
  settings.validate(defaults(algorithm="ddpg"))


# ---------------------------------------------------------------- one place for each rule
@pytest.mark.parametrize("make, message", [
    (lambda: lib("agent").SACConfig(gamma=1.0), "gamma=1: must be"),
    (lambda: lib("agent").SACConfig(hidden_sizes=("8", "x")),
     "hidden_sizes='8,x'"),
    (lambda: lib("ddpg").DDPGConfig(tau=0.0), "tau=0: must be in (0, 1]"),
    (lambda: lib("loop").LoopConfig("Pendulum-v1", eval_every=0),
     "eval_every=0: must be >= 1"),
    (lambda: lib("networks").get_activation("relux"),
     "activation='relux': must be one of"),
    (lambda: lib("parallel").check_distributed_flags("h", 1, 0),
     "coordinator_address='h': must be HOST:PORT"),
])
def test_the_library_refuses_through_the_settings_rules(make, message):
  with pytest.raises(ValueError) as e:
    make()
  assert str(e.value).startswith(message), str(e.value)


def test_hparams_are_checked_by_the_same_rules():
  from sac_jax import agent, ddpg
  h = agent.HParams.from_config(agent.SACConfig()).stack(2, lr_v=[1e-3, 0.0])
  with pytest.raises(ValueError, match=r"^lr_v=0: must be > 0$"):
    agent.validate_hparams(h)
  h = agent.HParams.from_config(agent.SACConfig()).stack(2, alpha=[1.0, 0.0])
  agent.validate_hparams(h)
  with pytest.raises(ValueError, match=r"^alpha=0: must be > 0 \(the initial"):
    agent.validate_hparams(h, auto_alpha=True)
  d = ddpg.DDPGHParams.from_config(ddpg.DDPGConfig()).stack(2, expl_noise=[0.1, -1.0])
  with pytest.raises(ValueError, match=r"^expl_noise=-1: must be >= 0$"):
    ddpg.validate_hparams(d)


def test_the_cli_turns_a_refusal_into_its_one_line_usage_error():
  from experiments import run
  with pytest.raises(run.UsageError, match=r"^gamma=1: must be in \[0, 1\)$"):
    run.validate({**defaults(gamma=1.0), "sweep": [], "run_dir": "runs/x"})


def test_learner_config_from_values():
  from sac_jax import agent, ddpg, learners
  cfg = learners.config_from(defaults(hidden_sizes=["16", "8"], lr_q=1e-3))
  assert cfg == agent.SACConfig(hidden_sizes=(16, 8), lr_q=1e-3)
  cfg = learners.config_from(defaults(algorithm="ddpg", lr=1e-3, lr_q=2e-3))
  assert isinstance(cfg, ddpg.DDPGConfig) and (cfg.lr_policy, cfg.lr_q) == (1e-3, 2e-3)
  assert cfg.hidden_sizes == (128, 128)
  with pytest.raises(ValueError, match="algorithm='td3': must be one of"):
    learners.config_from({"algorithm": "td3"})


def test_each_config_gets_its_learner_and_anything_else_is_refused():
  from sac_jax import agent, ddpg, learners
  assert type(learners.make(agent.SACConfig(hidden_sizes=(8, 8)), 3, 1)) is agent.Agent
  assert type(learners.make(ddpg.DDPGConfig(hidden_sizes=(8, 8)), 3, 1)) is ddpg.DDPGAgent
  with pytest.raises(TypeError, match="no learner for a config of type dict"):
    learners.make({"algorithm": "sac"}, 3, 1)


def test_validation_imports_neither_absl_nor_jax():
  code = ("import sys\n"
          "from sac_jax import settings\n"
          "settings.validate({s.name: s.default for s in settings.SETTINGS})\n"
          "try:\n"
          "  settings.validate({'gamma': 1.0, 'activation': 'relu'})\n"
          "except ValueError as e:\n"
          "  assert str(e).startswith('gamma=1: must be'), e\n"
          "else:\n"
          "  raise SystemExit('no refusal')\n"
          "bad = [m for m in sys.modules if m.split('.')[0] in ('absl', 'jax', 'flax')]\n"
          "assert not bad, bad\n")
  res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                       text=True)
  assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------- what a branch keeps
# A value other than the default for every setting that changes shapes or the graph but
# not the saved state: a branch (--branch_from) may change these.
BRANCH_MAY_CHANGE = dict(batch_size=64, grad_steps=4, auto_alpha=True,
                         policy_gradient="mixture_reparameterized",
                         update_order="sequential", squash_correction="capped",
                         log_std_min=-10.0, log_std_max=3.0)


def test_the_state_defining_settings():
  assert settings.STATE_DEFINING == (
      "env_id", "seed", "num_seeds", "num_components", "hidden_sizes", "activation",
      "buffer_size", "algorithm", "value_network", "num_q", "obs_transform")
  assert set(settings.SHAPE_CHANGING) - set(settings.STATE_DEFINING) == set(
      BRANCH_MAY_CHANGE)
  # State-defining, but a branch moves the source's replay into its own capacity
  # (test_branch, test_replay).
  assert settings.STATE_A_BRANCH_MAY_CHANGE == ("buffer_size",)


@pytest.mark.parametrize("name", sorted(BRANCH_MAY_CHANGE))
def test_a_setting_a_branch_may_change_leaves_the_saved_state_as_it_is(name):
  """The TrainState's entries, shapes and dtypes (jax.eval_shape: nothing computed) are
  those of the default config; a state-defining setting changes them."""
  import jax
  from sac_jax import agent, loop

  def state(**kw):
    cfg = agent.SACConfig(**{**dict(num_components=2, hidden_sizes=(8,), buffer_size=200,
                                    batch_size=16), **kw})
    ag = agent.Agent(cfg, 3, 2)
    return jax.eval_shape(ag._init_stacked, loop.seed_keys([0, 1]), ag.default_hparams(2))

  shapes = lambda tree: (jax.tree_util.tree_structure(tree),
                         [(x.shape, x.dtype) for x in jax.tree.leaves(tree)])
  assert shapes(state(**{name: BRANCH_MAY_CHANGE[name]})) == shapes(state())
  for other in (dict(num_q=2), dict(buffer_size=100), dict(value_network=False,
                policy_gradient="mixture_reparameterized")):
    assert shapes(state(**other)) != shapes(state()), other
