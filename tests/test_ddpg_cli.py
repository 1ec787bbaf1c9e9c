"""DDPG through the command line: the flag interplay with the SAC flagfiles (SAC-only
settings ignored and named once, contradictions refused in one line before any compute),
a tiny end-to-end run with resume, and learning on Pendulum."""

import numpy as np
import pytest

from cli_util import cli, read_rows

TINY = ["--env_id=Pendulum-v1", "--hidden_sizes=16,16", "--batch_size=16",
        "--start_steps=100", "--buffer_size=400", "--eval_every=100", "--eval_episodes=1",
        "--log_every_s=0"]


@pytest.mark.parametrize("args, message", [
    (["--flagfile=experiments/flags/halfcheetah.flags",
      "--flagfile=experiments/flags/modern.flags", "--flagfile=experiments/flags/ddpg.flags"],
     "--algorithm=ddpg contradicts --auto_alpha=True"),
    (["--flagfile=experiments/flags/ddpg.flags", "--num_q=2"],
     "--algorithm=ddpg contradicts --num_q=2"),
    (["--flagfile=experiments/flags/ddpg.flags", "--sweep=reg=0,1"],
     "--sweep reg: reg is a SAC setting"),
    (["--expl_noise=0.3"], "--expl_noise applies to --algorithm=ddpg only"),
    (["--flagfile=experiments/flags/ddpg.flags", "--expl_noise=-1"],
     "expl_noise=-1: must be >= 0"),
    (["--flagfile=experiments/flags/ddpg.flags", "--sweep=weight_decay=0,-0.5"],
     "--sweep weight_decay: weight_decay=-0.5"),
])
def test_contradictions_are_refused_in_one_line(tmp_path, args, message):
  res = cli("experiments.run", *args, f"--run_dir={tmp_path}/r", timeout=120)
  assert res.returncode == 2, res.stderr[-2000:]
  lines = [l for l in res.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and message in lines[0], res.stderr[-2000:]
  assert not (tmp_path / "r" / "metrics.csv").exists()


def test_task_flagfile_then_ddpg_flagfile_trains_and_resumes(tmp_path):
  """halfcheetah.flags then ddpg.flags: SAC-only settings named once, DDPG's
  hyperparameters in the rows, and a resume continues the same members."""
  run = str(tmp_path / "run")
  args = ["--flagfile=experiments/flags/halfcheetah.flags",
          "--flagfile=experiments/flags/ddpg.flags", *TINY[1:], "--env_id=Pendulum-v1",
          "--num_seeds=2", f"--run_dir={run}", "--checkpoint_every=100"]
  first = cli("experiments.run", *args, "--total_env_steps=200", "--log_every_s=60")
  assert first.returncode == 0, first.stderr[-3000:]
  notes = [l for l in first.stdout.splitlines() if "ignores the SAC-only" in l]
  assert len(notes) == 1 and "--num_components=4" in notes[0] and "--reg=0.001" in notes[0]
  second = cli("experiments.run", *args, "--total_env_steps=300")
  assert second.returncode == 0, second.stderr[-3000:]
  rows = read_rows(run)
  assert [(int(r["env_step"]), int(r["member"])) for r in rows] == [
      (s, m) for s in (100, 200, 300) for m in (0, 1)]
  r = rows[-1]
  assert float(r["reward_scale"]) == 1.0 and float(r["lr_policy"]) == pytest.approx(1e-4)
  assert float(r["expl_noise"]) == pytest.approx(0.1) and "alpha" not in r
  assert r["train_q_loss"] not in ("", None) and np.isfinite(float(r["train_q_loss"]))
