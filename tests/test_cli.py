"""The real CLI (`python -m experiments.run`) end to end with a tiny budget, and every bad
input: one clear line naming the value, a non-zero exit, no traceback, no compute."""

import json
import os
import subprocess
import sys

import pytest

from cli_util import ROOT, cli, read_rows


def run_cli(*args, timeout=300):
  return cli("experiments.run", *args, timeout=timeout)


# Two members, tiny networks: the point is the plumbing, not learning.
TINY = ["--env_id=Pendulum-v1", "--num_seeds=2", "--seed=3", "--start_steps=100",
        "--num_components=2", "--hidden_sizes=16,16", "--batch_size=16",
        "--buffer_size=1000", "--eval_episodes=2", "--log_every_s=1"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("cli") / "run")
  args = TINY + ["--total_env_steps=400", "--eval_every=100", "--checkpoint_every=200",
                 f"--run_dir={run_dir}"]
  proc = run_cli(*args)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return run_dir, args, proc


def test_end_to_end_outputs(finished_run):
  run_dir, _, proc = finished_run
  assert "Traceback" not in proc.stderr
  # Progress: evaluation lines with mean and spread over the members, and the end line.
  assert "eval @ 100: mean" in proc.stdout and "over 2" in proc.stdout
  assert "eval @ 400: mean" in proc.stdout and "done: 400 env steps" in proc.stdout

  rows = read_rows(run_dir)
  assert [(int(r["env_step"]), int(r["member"])) for r in rows] == [
      (s, m) for s in (100, 200, 300, 400) for m in (0, 1)]
  for col in ("seed", "eval_return", "eval_return_std", "reward_scale", "alpha", "tau",
              "gamma", "reg", "lr_policy", "train_q_loss", "train_v_loss",
              "train_policy_loss", "train_entropy", "train_alpha", "sps"):
    assert col in rows[0], col
  assert [int(r["seed"]) for r in rows[:2]] == [3, 4]  # member i: seed + i
  assert float(rows[0]["gamma"]) == 0.99 and float(rows[0]["tau"]) == 0.01
  for r in rows:
    assert -2000 < float(r["eval_return"]) <= 0  # Pendulum returns are in [-16.3*200, 0]
    assert float(r["eval_return_std"]) >= 0 and float(r["sps"]) > 0
  # Updates start at step max(start_steps, batch) = 100: losses are logged after that.
  assert float(rows[-1]["train_q_loss"]) > 0

  summary = json.load(open(os.path.join(run_dir, "summary.json")))
  assert summary["complete"] and summary["env_steps"] == 400
  assert [m["final_return"] for m in summary["members"]] == pytest.approx(
      [float(r["eval_return"]) for r in rows[-2:]])
  assert [m["best_return"] for m in summary["members"]] == pytest.approx(
      [max(float(r["eval_return"]) for r in rows if r["member"] == str(i)) for i in (0, 1)])
  assert summary["wall_time_s"] > 0 and summary["sps_per_member"] > 0

  png = open(os.path.join(run_dir, "curves.png"), "rb").read()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
  assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["200", "400"]
  flags_txt = open(os.path.join(run_dir, "flags.txt")).read()
  for f in TINY[:-1] + ["--total_env_steps=400", f"--run_dir={run_dir}"]:
    assert f in flags_txt.splitlines(), f
  # No temporary files left behind by the atomic writes.
  assert not [f for f in os.listdir(run_dir) if f.endswith(".tmp")]


def test_rerun_of_a_finished_run_says_complete(finished_run):
  run_dir, args, _ = finished_run
  before = read_rows(run_dir)
  for argv in (args, [f"--flagfile={os.path.join(run_dir, 'flags.txt')}"]):
    proc = run_cli(*argv)
    assert proc.returncode == 0, proc.stderr
    assert "is complete" in proc.stdout and "Traceback" not in proc.stderr
  assert read_rows(run_dir) == before


@pytest.mark.parametrize("leftover", ["metrics.csv", "summary.json", "checkpoints/100"])
def test_a_run_dir_with_results_but_no_run_json_is_refused(tmp_path, leftover):
  """Results whose run.json is missing (a copy, another tool's) are never written into:
  one line before any compute, and nothing added to the directory."""
  run_dir = tmp_path / "run"
  (run_dir / os.path.dirname(leftover)).mkdir(parents=True, exist_ok=True)
  if leftover.startswith("checkpoints"):
    (run_dir / leftover).mkdir()
  else:
    (run_dir / leftover).write_text("env_step,member,seed,eval_return\n5000,0,3,1.0\n")
  before = sorted(os.listdir(run_dir))
  proc = run_cli(*TINY, "--total_env_steps=200", f"--run_dir={run_dir}")
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith(f"error: run_dir={str(run_dir)!r} holds {leftover.split('/')[0]}")
  assert "no run.json" in line, line
  assert sorted(os.listdir(run_dir)) == before


@pytest.mark.parametrize("flags, shown, kind", [
    (["--hidden_sizes=32,32", "--num_seeds=3", "--num_q=2"],
     ["hidden_sizes", "num_seeds", "num_q"], "shape-changing"),
    (["--reward_scale=5"], ["reward_scale=1.0 in the run vs 5.0 now"], "flags differ")])
def test_resume_with_changed_flags_is_refused(finished_run, flags, shown, kind):
  run_dir, args, _ = finished_run
  proc = run_cli(*args, *flags)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith(f"error: cannot resume {run_dir}") and kind in line, line
  for s in shown:
    assert s in line, line
  assert "flags.txt" in line


def branch_args(run_dir, branch, *extra):
  return [f"--flagfile={os.path.join(run_dir, 'flags.txt')}", f"--run_dir={branch}",
          f"--branch_from={run_dir}", "--branch_step=200", "--total_env_steps=300", *extra]


def test_a_branch_from_the_cli(finished_run, tmp_path):
  """A new run from the finished run's checkpoint at 200 with another squash term and
  replay size (state-defining, but a branch may change it): the source's rows up to 200,
  then its own; the source untouched; rerun: complete."""
  run_dir, _, _ = finished_run
  source_rows = read_rows(run_dir)
  ckpts = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))
  branch = str(tmp_path / "branch")
  proc = run_cli(*branch_args(run_dir, branch, "--squash_correction=capped",
                              "--buffer_size=500"))
  assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert f"branched from {run_dir} at env step 200 (4 metrics rows copied" in proc.stdout
  assert "its replay of 1000 slots moved into 500, the newest transitions kept" in proc.stdout
  rows = read_rows(branch)
  assert [(int(r["env_step"]), int(r["member"])) for r in rows] == [
      (s, m) for s in (100, 200, 300) for m in (0, 1)]
  assert rows[:4] == source_rows[:4]
  lines = open(os.path.join(branch, "flags.txt")).read().splitlines()
  for f in (f"--branch_from={run_dir}", "--branch_step=200", "--squash_correction=capped",
            "--buffer_size=500", f"--run_dir={branch}"):
    assert f in lines, f
  assert read_rows(run_dir) == source_rows
  assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ckpts
  again = run_cli(f"--flagfile={os.path.join(branch, 'flags.txt')}")
  assert again.returncode == 0 and "is complete" in again.stdout, again.stderr[-2000:]
  with open(os.path.join(branch, "summary.json")) as f:  # rewritten by the rerun
    assert json.load(f)["branched_from"] == dict(run_dir=run_dir, env_step=200)


@pytest.mark.parametrize("extra, says", [
    (["--hidden_sizes=32,32"], "cannot branch from {src}: state-defining setting(s) differ "
     "(hidden_sizes=['16', '16'] in the source vs ['32', '32'] now)"),
    (["--branch_step=100"], "branch_step=100: {src} has no checkpoint at that env step; it "
     "has 200, 400"),
    (["--branch_from={src}", "--run_dir={src}"], "branch_from={src!r} is this run's own "
     "run_dir"),
    (["--branch_from={tmp}"], "branch_from={tmp!r}: no run.json there"),
])  # the rules between the branch settings alone: test_settings and test_branch
def test_bad_branches_are_one_line(finished_run, tmp_path, extra, says):
  run_dir, _, _ = finished_run
  fill = lambda x: x.format(src=run_dir, tmp=str(tmp_path))
  branch = str(tmp_path / "branch")
  proc = run_cli(*branch_args(run_dir, branch), *map(fill, extra))
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  line = proc.stderr.strip().splitlines()[-1]
  assert line == "error: " + fill(says) or line.startswith("error: " + fill(says)), line
  assert not os.path.exists(os.path.join(branch, "metrics.csv"))


def test_flagfiles_nest_and_later_flags_override(tmp_path):
  base = tmp_path / "base.flags"
  base.write_text("# a comment\n--num_components=0\n--gamma=0.5\n")
  top = tmp_path / "top.flags"
  top.write_text(f"--flagfile={base}\n--gamma=1.5\n")
  # top's gamma overrides base's; K=0 from the nested file is reported first
  proc = run_cli(f"--flagfile={top}", f"--run_dir={tmp_path / 'r'}")
  assert proc.returncode == 2 and "num_components=0" in proc.stderr
  proc = run_cli(f"--flagfile={top}", "--num_components=2", f"--run_dir={tmp_path / 'r'}")
  assert proc.returncode == 2 and "gamma=1.5" in proc.stderr, proc.stderr


def test_paper_flagfiles_parse_with_the_documented_values(tmp_path):
  """Each paper flagfile resolves (nested include) and passes validation; checked by
  breaking only the run dir so nothing runs. humanoid.flags and humanoidstandup.flags
  depart from the paper in their inputs (symlog observations: docs/reproduction.md,
  section 1)."""
  expected = {"halfcheetah": ("HalfCheetah-v5", 10.0, "none"),
              "hopper": ("Hopper-v5", 1.0, "none"),
              "walker2d": ("Walker2d-v5", 10.0, "none"), "ant": ("Ant-v5", 100.0, "none"),
              "humanoid": ("Humanoid-v5", 3.0, "symlog"),
              "humanoidstandup": ("HumanoidStandup-v5", 0.3, "symlog")}
  code = ("import sys; from absl import flags; import experiments.run as r; "
          "flags.FLAGS(sys.argv); v = r.flag_values(); "
          "print(v['env_id'], v['reward_scale'], v['num_components'], v['hidden_sizes'], "
          "v['batch_size'], v['buffer_size'], v['tau'], v['lr'], v['num_seeds'], "
          "v['num_q'], v['auto_alpha'], v['policy_gradient'], v['obs_transform'])")
  for name, (env_id, scale, transform) in expected.items():
    out = subprocess.run(
        [sys.executable, "-c", code, f"--flagfile=experiments/flags/{name}.flags"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert out == [env_id, str(scale), "4", "['128',", "'128']", "128", "1000000", "0.01",
                   "0.0003", "3", "1", "False", "likelihood_ratio", transform], (name, out)
  out = subprocess.run(
      [sys.executable, "-c", code, "--flagfile=experiments/flags/hopper.flags",
       "--flagfile=experiments/flags/modern.flags"],
      cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
  assert out == ["Hopper-v5", "1.0", "1", "['256',", "'256']", "256", "1000000", "0.005",
                 "0.0003", "3", "2", "True", "reparameterized", "none"], out


BAD = [
    (["--env_id=HalfCheetah-v9"], "HalfCheetah-v9", "did you mean"),
    (["--env_id=CartPole-v1"], "CartPole-v1", "Discrete"),
    (["--env_id=tests.test_envs:SacJaxTest/DictObs-v0"], "DictObs", "observation space"),
    (["--num_components=0"], "num_components=0", ">= 1"),
    (["--gamma=1.0"], "gamma=1", "[0, 1)"),
    (["--gamma=-0.1"], "gamma=-0.1", "[0, 1)"),
    (["--lr=0"], "lr=0", "> 0"),
    (["--lr=-1e-3"], "lr=-0.001", "> 0"),
    (["--batch_size=0"], "batch_size=0", ">= 1"),
    (["--batch_size=256", "--buffer_size=100"], "batch_size=256", "buffer_size=100"),
    (["--total_env_steps=500", "--start_steps=1000"], "total_env_steps=500",
     "start_steps=1000"),
    (["--hidden_sizes=64,x"], "hidden_sizes", "positive integers"),
    (["--policy_gradient=reparameterized", "--num_components=4"], "num_components",
     "num_components=1"),
    (["--num_q=3"], "num_q=3", "1 or 2"),
    (["--tau=0"], "tau=0", "(0, 1]"),
    (["--reward_scale=-1"], "reward_scale=-1", "> 0"),
    (["--flagfile=does/not/exist.flags"], "does/not/exist.flags", "Unable to open"),
    (["--num_seeds=two"], "two", "num_seeds"),
    (["--coordinator_address=localhost"], "coordinator_address='localhost'", "HOST:PORT"),
    (["--coordinator_address=localhost:1234"], "num_processes=None", ">= 1"),
    (["--coordinator_address=localhost:1234", "--num_processes=2", "--process_id=2"],
     "process_id=2", "[0, 1]"),
    (["--num_processes=2", "--process_id=1"], "num_processes=2", "--coordinator_address"),
]


@pytest.mark.parametrize("args, value, allowed", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_input_is_one_clear_line(tmp_path, args, value, allowed):
  run_dir = tmp_path / "run"
  proc = run_cli(*args, f"--run_dir={run_dir}", timeout=60)
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr, proc.stderr
  assert value in proc.stderr and allowed in proc.stderr, proc.stderr
  errors = [l for l in proc.stderr.splitlines() if "error" in l.lower()]
  assert len(errors) == 1, proc.stderr
  assert not run_dir.exists()  # refused before any output (or compute)


def test_unwritable_run_dir(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  run_dir = blocker / "run"  # a directory under a regular file cannot be created
  proc = run_cli("--env_id=Pendulum-v1", f"--run_dir={run_dir}", timeout=60)
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert str(run_dir) in proc.stderr and "not writable" in proc.stderr, proc.stderr


def test_a_member_that_diverges_is_frozen_reported_and_ranked_last(tmp_path):
  """reward_scale=3e38 overflows member 1's Q target in float32 at its first update: the
  run goes on, member 1 is announced once, marked in metrics.csv, listed in a strict
  summary.json and ranked last; member 0 trains on. With --tensorboard."""
  run_dir = str(tmp_path / "run")
  args = [a for a in TINY if not a.startswith("--num_seeds")] + [
      "--num_seeds=1", "--sweep=reward_scale=1,3e38", "--total_env_steps=200",
      "--eval_every=100", "--tensorboard", f"--run_dir={run_dir}"]
  proc = run_cli(*args)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "Traceback" not in proc.stderr
  assert proc.stderr.count("member 1 (reward_scale=3e+38) diverged at env step 100") == 1, \
      proc.stderr
  assert "(1 of 2 diverged, not in the mean)" in proc.stdout, proc.stdout
  rows = read_rows(run_dir)
  assert [(r["member"], r["diverged_at_step"], r["eval_return"] == "") for r in rows] == [
      ("0", "", False), ("1", "", False), ("0", "", False), ("1", "100", True)]

  def refuse(name):
    raise ValueError(f"non-strict JSON: {name}")
  summary = json.loads(open(os.path.join(run_dir, "summary.json")).read(),
                       parse_constant=refuse)
  assert summary["num_diverged"] == 1 and summary["diverged"][0]["member"] == 1
  assert [(s["setting"], s["num_diverged"]) for s in summary["settings"]] == [
      ("reward_scale=1", 0), ("reward_scale=3e+38", 1)]
  assert summary["final_return_mean"] == float(rows[2]["eval_return"])
  assert os.path.getsize(os.path.join(run_dir, "curves.png")) > 10_000
  # --tensorboard: event files beside (their content: tests/test_tensorboard.py).
  events = os.listdir(os.path.join(run_dir, "tensorboard"))
  assert events and all(e.startswith("events.out.tfevents.") for e in events), events
