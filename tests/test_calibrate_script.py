"""experiments/calibrate_reward_scale.sh: the commands it runs (a stand-in for python logs
them), the grid and added flags, where each run goes, and bad input refused before any run."""

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join("experiments", "calibrate_reward_scale.sh")


def _calibrate(tmp_path, *args, scales=None, exit_code=0):
  """Run the script with a stand-in PYTHON that logs its arguments; (result, commands)."""
  log = tmp_path / "calls.log"
  fake = tmp_path / "python"
  fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit {exit_code}\n')
  fake.chmod(0o755)
  env = dict(os.environ, PYTHON=str(fake))
  env.pop("SCALES", None)
  if scales is not None:
    env["SCALES"] = scales
  res = subprocess.run(["bash", SCRIPT, "RUNS", *args], cwd=REPO, env=env,
                       capture_output=True, text=True)
  calls = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
  return res, calls


def _flag(call, name):
  return next(a.split("=", 1)[1] for a in call if a.startswith(f"--{name}="))


def test_default_grid_on_the_four_tasks(tmp_path):
  res, calls = _calibrate(tmp_path)
  assert res.returncode == 0, res.stderr
  assert [_flag(c, "flagfile") for c in calls] == [
      f"experiments/flags/{t}.flags" for t in ("halfcheetah", "hopper", "walker2d", "ant")]
  for c, t in zip(calls, ("halfcheetah", "hopper", "walker2d", "ant")):
    assert c[:2] == ["-m", "experiments.run"]
    assert _flag(c, "sweep") == "reward_scale=1,3,10,30,100"
    assert (_flag(c, "num_seeds"), _flag(c, "seed")) == ("2", "0")
    assert (_flag(c, "total_env_steps"), _flag(c, "buffer_size")) == ("100000", "100000")
    assert (_flag(c, "eval_every"), _flag(c, "eval_episodes")) == ("5000", "5")
    assert _flag(c, "run_dir") == f"RUNS/{t}-reward-scale"


def test_an_extended_grid_and_added_flags_get_their_own_run(tmp_path):
  """SCALES replaces the grid; flags after `--` follow the flagfile (so they win over it);
  both name the run directory, so an extension never resumes into the default grid's."""
  res, calls = _calibrate(tmp_path, "humanoidstandup", "hopper", "--",
                          "--obs_transform=none", "--hidden_sizes=256,256",
                          scales="0.03,0.1")
  assert res.returncode == 0, res.stderr
  assert len(calls) == 2
  for c, t in zip(calls, ("humanoidstandup", "hopper")):
    assert _flag(c, "sweep") == "reward_scale=0.03,0.1"
    assert c[-2:] == ["--obs_transform=none", "--hidden_sizes=256,256"]
    assert c.index("--obs_transform=none") > c.index(f"--flagfile=experiments/flags/{t}.flags")
    assert _flag(c, "run_dir") == \
        f"RUNS/{t}-reward-scale-0.03_0.1-obs_transformnone-hidden_sizes256256"
  # The default grid with added flags: the flags alone name the run.
  (tmp_path / "calls.log").unlink()
  _, calls = _calibrate(tmp_path, "hopper", "--", "--obs_transform=symlog")
  assert _flag(calls[0], "run_dir") == "RUNS/hopper-reward-scale-obs_transformsymlog"


@pytest.mark.parametrize("args, scales, says", [
    (("hoper",), None, "task 'hoper': must be one of: ant halfcheetah hopper"),
    (("hopper", "paper"), None, "task 'paper': must be one of:"),
    (("hopper",), "1,x", "SCALES=1,x: must be positive numbers"),
    (("hopper",), "-1,3", "SCALES=-1,3: must be positive numbers"),
])
def test_bad_input_is_refused_before_any_run(tmp_path, args, scales, says):
  res, calls = _calibrate(tmp_path, *args, scales=scales)
  assert res.returncode == 2 and calls == []
  assert says in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("scales, sweep", [
    ("", "reward_scale=1,3,10,30,100"),   # empty SCALES: the default grid
    ("1e3,0.5", "reward_scale=1e3,0.5"),   # exponents and decimals are numbers
])
def test_good_grids_are_accepted(tmp_path, scales, sweep):
  res, calls = _calibrate(tmp_path, "hopper", scales=scales)
  assert res.returncode == 0 and _flag(calls[0], "sweep") == sweep


def test_a_failed_task_does_not_stop_the_others_and_fails_the_script(tmp_path):
  res, calls = _calibrate(tmp_path, "hopper", "ant", exit_code=1)
  assert len(calls) == 2
  assert res.returncode == 1
  assert "failed: hopper ant (rerun the same command to resume)" in res.stderr
