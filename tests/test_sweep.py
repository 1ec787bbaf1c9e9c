"""Sweeps: `--sweep` (per-member hyperparameters in one vmapped state) through the real CLI,
its labelled rows, curves and ranking, refusal of bad specs and of a changed sweep on
resume; `experiments.sweep --grid` (shape-changing settings as separate runs)."""

import json
import os
import subprocess
import sys

import pytest

from cli_util import ROOT, cli, read_rows
from experiments import plot, run, sweep

TINY = ["--env_id=Pendulum-v1", "--seed=3", "--start_steps=100", "--num_components=2",
        "--hidden_sizes=16,16", "--batch_size=16", "--buffer_size=1000",
        "--eval_episodes=2", "--log_every_s=0"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
  run_dir = str(tmp_path_factory.mktemp("sweep") / "run")
  args = TINY + ["--num_seeds=2", "--sweep", "reward_scale=0.5,5", "--sweep=lr=1e-3,3e-4",
                 "--total_env_steps=300", "--eval_every=150", f"--run_dir={run_dir}"]
  proc = cli("experiments.run", *args)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return run_dir, args, proc


def test_sweep_rows_are_labelled_grid_major_with_shared_seeds(swept):
  run_dir, _, proc = swept
  assert "8 member(s) (4 settings x 2 seeds)" in proc.stdout
  rows = read_rows(run_dir)
  assert [(int(r["env_step"]), int(r["member"])) for r in rows] == [
      (s, m) for s in (150, 300) for m in range(8)]
  settings = [(0.5, 1e-3), (0.5, 3e-4), (5.0, 1e-3), (5.0, 3e-4)]
  for r in rows:
    m = int(r["member"])
    g, k = divmod(m, 2)  # grid-major, seeds inner
    scale, lr = settings[g]
    assert r["setting"] == f"reward_scale={scale:g},lr={lr:g}"
    assert (int(r["setting_index"]), int(r["seed_index"]), int(r["seed"])) == (g, k, 3 + k)
    assert float(r["reward_scale"]) == scale
    for name in ("lr_policy", "lr_q", "lr_v", "lr_alpha"):  # lr means all four
      assert float(r[name]) == pytest.approx(lr, rel=1e-6)
    assert float(r["gamma"]) == 0.99 and float(r["alpha"]) == 1.0  # not swept: defaults
    assert -2000 < float(r["eval_return"]) <= 0

  summary = json.load(open(os.path.join(run_dir, "summary.json")))
  ranked = summary["settings"]
  assert sorted(e["setting"] for e in ranked) == sorted(
      f"reward_scale={s:g},lr={l:g}" for s, l in settings)
  finals = [e["final_return_mean"] for e in ranked]
  assert finals == sorted(finals, reverse=True) and [e["rank"] for e in ranked] == [1, 2, 3, 4]
  last = {int(r["member"]): float(r["eval_return"]) for r in rows if r["env_step"] == "300"}
  for e in ranked:
    assert e["seeds"] == [3, 4]
    assert e["final_return_mean"] == pytest.approx(sum(last[m] for m in e["members"]) / 2)

  # One curve per setting, each the mean of its two seeds.
  groups = plot.read_groups(os.path.join(run_dir, "metrics.csv"))
  assert list(groups) == [f"reward_scale={s:g},lr={l:g}" for s, l in settings]
  for steps, mat in groups.values():
    assert steps.tolist() == [150, 300] and mat.shape == (2, 2)
  png = open(os.path.join(run_dir, "curves.png"), "rb").read()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
  flags_txt = open(os.path.join(run_dir, "flags.txt")).read().splitlines()
  assert "--sweep=reward_scale=0.5,5" in flags_txt and "--sweep=lr=1e-3,3e-4" in flags_txt


def test_resume_refuses_a_changed_sweep(swept):
  run_dir, args, _ = swept
  changed = [a for a in args if not a.startswith("--sweep=lr")] + ["--sweep=lr=1e-3"]
  proc = cli("experiments.run", *changed, timeout=120)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith(f"error: cannot resume {run_dir}") and "sweep=" in line, line
  # The unchanged command finds the run complete.
  proc = cli("experiments.run", *args, timeout=120)
  assert proc.returncode == 0 and "is complete" in proc.stdout, proc.stderr


BAD_SWEEPS = [
    (["foo=1,2"], "unknown hyperparameter"),
    (["K=1,2"], "experiments.sweep --grid num_components"),
    (["hidden_sizes=16,32"], "fixed per process"),
    (["batch_size=16,32"], "fixed per process"),
    (["reward_scale="], "empty value list"),
    (["reward_scale=1,,2"], "empty value list"),
    (["reward_scale=1,abc"], "cannot parse 'abc'"),
    (["reward_scale"], "expected NAME=V1,V2"),
    (["tau=0.1,0.1"], "repeated"),
    (["lr=1e-3", "lr_q=1e-4"], "overlaps"),
]


@pytest.mark.parametrize("specs, msg", BAD_SWEEPS, ids=[" ".join(b[0]) for b in BAD_SWEEPS])
def test_bad_sweep_specs_are_refused(specs, msg):
  with pytest.raises(run.UsageError, match=None) as e:
    run.parse_sweeps(specs)
  assert msg in str(e.value), str(e.value)


@pytest.mark.parametrize("spec, msg", [("gamma=0.9,1", "--sweep gamma: gamma=1: must be in"),
                                       ("lr=1e-3,0", "--sweep lr: lr_policy=0: must be > 0"),
                                       ("alpha=-1,1", "--sweep alpha: alpha=-1")])
def test_swept_values_pass_the_single_value_checks(spec, msg):
  from sac_jax import agent
  v = dict(num_seeds=2, seed=0, sweep=[spec])
  with pytest.raises(ValueError) as e:
    run.member_hparams(v, agent.SACConfig())
  assert msg in str(e.value), str(e.value)


def test_cli_bad_sweep_is_one_line_before_any_output(tmp_path):
  run_dir = tmp_path / "run"
  proc = cli("experiments.run", "--env_id=Pendulum-v1", "--sweep", "gamma=0.9,1.5",
             f"--run_dir={run_dir}", timeout=60)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
  assert [l for l in proc.stderr.splitlines() if "error" in l.lower()] == [
      "error: --sweep gamma: gamma=1.5: must be in [0, 1)"]
  assert not run_dir.exists()


@pytest.mark.parametrize("specs, msg", [
    (["reward_scale=1,3"], "--sweep reward_scale=1,3"),
    (["nope=1,2"], "not a setting to vary"),
    (["num_components=1,x"], "cannot parse 'x'"),
    (["K="], "empty value list"),
    (["K=1,2", "num_components=4"], "given twice"),
    ([], "no --grid given")])
def test_bad_grid_specs_are_refused(specs, msg):
  with pytest.raises(run.UsageError) as e:
    sweep.parse_grid(specs)
  assert msg in str(e.value), str(e.value)


def test_grid_parses_aliases_and_list_values():
  grid = sweep.parse_grid(["K=1,2", "hidden_sizes=16x16,32"])
  assert grid == [("num_components", [("1", 1), ("2", 2)]),
                  ("hidden_sizes", [("16x16", ["16", "16"]), ("32", ["32"])])]


def test_grid_of_shape_changing_settings_runs_separately_and_plots_together(tmp_path):
  sweep_dir = str(tmp_path / "grid")
  args = TINY + ["--num_seeds=1", "--total_env_steps=200", "--eval_every=100",
                 "--grid", "K=1,2", "--parallel=2", f"--run_dir={sweep_dir}"]
  proc = cli("experiments.sweep", *args)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "2 of 2 run(s) succeeded" in proc.stdout
  for k in (1, 2):
    sub = os.path.join(sweep_dir, f"num_components={k}")
    rows = read_rows(sub)
    assert [int(r["env_step"]) for r in rows] == [100, 200]
    assert f"--num_components={k}" in open(os.path.join(sub, "flags.txt")).read()
  summary = json.load(open(os.path.join(sweep_dir, "summary.json")))
  assert sorted(e["point"] for e in summary["ranking"]) == ["num_components=1",
                                                            "num_components=2"]
  assert all(e["complete"] for e in summary["ranking"])
  png = open(os.path.join(sweep_dir, "curves.png"), "rb").read()
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
  flagfile = os.path.join(sweep_dir, "sweep_flags.txt")
  assert "--grid=num_components=1,2" in open(flagfile).read().splitlines()

  # Rerun from the sweep's flagfile: every point is complete; a changed grid is refused.
  proc = cli("experiments.sweep", f"--flagfile={flagfile}")
  assert proc.returncode == 0 and proc.stdout.count("is complete") == 2, proc.stdout
  changed = [a for a in args if a not in ("--grid", "K=1,2")] + ["--grid=K=1,4"]
  proc = cli("experiments.sweep", *changed, timeout=120)
  assert proc.returncode == 2 and "cannot resume" in proc.stderr, proc.stderr


def test_sweep_flagfiles_parse():
  code = ("import sys; from absl import flags; import experiments.sweep as s; "
          "import experiments.run as r; flags.FLAGS(sys.argv); v = r.flag_values(); "
          "print(r.num_members(v), [n for n, _ in s.parse_grid(flags.FLAGS.grid)] "
          "if flags.FLAGS.grid else [])")
  expected = {"sweep_reward_scale": "15 []", "sweep_hard_vs_soft": "6 []",
              "sweep_components": "3 ['num_components']",
              "sweep_grad_steps": "3 ['grad_steps']"}
  for name, want in expected.items():
    out = subprocess.run(
        [sys.executable, "-c", code, "--flagfile=experiments/flags/hopper.flags",
         f"--flagfile=experiments/flags/{name}.flags"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert out == want, (name, out)
