"""Several processes through `jax.distributed` on localhost: two CLI processes with two CPU
devices each share one run directory and one global state sharded over the four devices.

- They give the same rows as one unsharded process (to float tolerance), through a resume:
  each process evaluates and writes only its own members, process 0 merges the rows.
- A SIGTERM to one process makes both checkpoint at the same env step and exit 143; the same
  commands then resume and finish with every row exactly once.

CPU collectives across processes use gloo (sac_jax.parallel.initialize_distributed).
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from cli_util import ROOT, cli, cpu_devices_env, read_rows

TINY = ["--env_id=Pendulum-v1", "--seed=3", "--start_steps=100", "--num_components=2",
        "--hidden_sizes=16,16", "--batch_size=16", "--buffer_size=1000",
        "--eval_episodes=2", "--log_every_s=0", "--eval_every=150"]
SWEEP = ["--num_seeds=2", "--sweep=reward_scale=1,3"]  # 4 members: 2 settings x 2 seeds
TIMEOUT = 420


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(args, num=2):
  """Starts `num` processes of the CLI with two CPU devices each; returns the Popens."""
  env = cpu_devices_env(2)
  addr = f"--coordinator_address=localhost:{_free_port()}"
  return [subprocess.Popen(
      [sys.executable, "-m", "experiments.run", *args, addr, f"--num_processes={num}",
       f"--process_id={p}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for p in range(num)]


def _finish(procs):
  out = []
  for p in procs:
    stdout, stderr = p.communicate(timeout=TIMEOUT)
    out.append((p.returncode, stdout, stderr))
  return out


def _run_two(args):
  results = _finish(_start(args))
  for rc, stdout, stderr in results:
    assert rc == 0, stdout + stderr
  return results


def _keys(rows):
  return [(int(r["env_step"]), int(r["member"]), int(r["seed"]), r.get("setting"))
          for r in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The same 4-member sweep, 150 env steps then resumed to 300: two processes x two
  devices, and one process on one device."""
  base = tmp_path_factory.mktemp("dist")
  two, one = str(base / "two"), str(base / "one")
  out = {}
  for total in (150, 300):
    args = TINY + SWEEP + [f"--total_env_steps={total}"]
    out[total] = _run_two(args + [f"--run_dir={two}"])
    proc = cli("experiments.run", *args, f"--run_dir={one}", "--num_devices=1",
               timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
  return two, one, out


def test_two_processes_equal_one_process_through_a_resume(runs):
  two, one, _ = runs
  rows2, rows1 = read_rows(two), read_rows(one)
  assert _keys(rows2) == _keys(rows1) == [
      (s, m, 3 + m % 2, f"reward_scale={1 + 2 * (m // 2)}")
      for s in (150, 300) for m in range(4)]
  for col in ("eval_return", "eval_return_std", "train_q_loss", "train_v_loss",
              "reward_scale"):
    a = np.array([float(r[col]) for r in rows2])
    b = np.array([float(r[col]) for r in rows1])
    # float32 programs partitioned differently may fuse differently: relative 1e-4.
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=col)


def test_each_process_writes_only_its_own_members_and_process_0_merges(runs):
  two, _, out = runs
  for p, members in ((0, {0, 1}), (1, {2, 3})):
    with open(os.path.join(two, "processes", f"metrics.{p}.csv"), newline="") as f:
      part = list(csv.DictReader(f))
    assert {int(r["member"]) for r in part} == members
    assert sorted({int(r["env_step"]) for r in part}) == [150, 300]
  (rc0, out0, _), (rc1, out1, _) = out[300]
  assert "resuming 4 member(s) (2 settings x 2 seeds) on 2 processes and 4 devices" in out0
  assert "resuming" not in out1  # process 0 alone reports
  summary = json.load(open(os.path.join(two, "summary.json")))
  assert summary["complete"] and summary["env_steps"] == 300
  assert sorted(s["setting"] for s in summary["settings"]) == ["reward_scale=1",
                                                              "reward_scale=3"]
  assert [s["members"] for s in sorted(summary["settings"], key=lambda s: s["setting"])] \
      == [[0, 1], [2, 3]]
  assert os.path.getsize(os.path.join(two, "curves.png")) > 10_000
  assert sorted(os.listdir(os.path.join(two, "checkpoints"))) == ["150", "300"]


def test_sigterm_to_one_process_checkpoints_all_at_one_step_and_resumes(tmp_path):
  run_dir = str(tmp_path / "run")
  args = TINY + ["--num_seeds=4", "--checkpoint_every=0", f"--run_dir={run_dir}"]
  procs = _start(args + ["--total_env_steps=100000"])
  deadline = time.time() + TIMEOUT
  while not any(r["env_step"] == "150" for r in read_rows(run_dir)):
    assert time.time() < deadline and all(p.poll() is None for p in procs), \
        [p.communicate() for p in procs]
    time.sleep(0.2)
  procs[1].send_signal(signal.SIGTERM)  # only process 1
  results = _finish(procs)
  assert [rc for rc, _, _ in results] == [143, 143], results
  steps = os.listdir(os.path.join(run_dir, "checkpoints"))
  assert len(steps) == 1 and int(steps[0]) % 100 == 0 and int(steps[0]) >= 150, steps
  for _, _, stderr in results:
    assert f"interrupted by SIGTERM at env step {steps[0]}" in stderr, stderr
  total = int(steps[0]) + 300
  _run_two(args + [f"--total_env_steps={total}"])
  evals = sorted(set(range(150, total + 1, 150)) | {total})
  keys = [(int(r["env_step"]), int(r["member"])) for r in read_rows(run_dir)]
  assert keys == [(s, m) for s in evals for m in range(4)], keys


def test_several_processes_need_a_named_run_dir():
  proc = cli("experiments.run", "--env_id=Pendulum-v1", "--coordinator_address=localhost:1",
             "--num_processes=2", "--process_id=0", timeout=60)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert "--run_dir" in proc.stderr.strip().splitlines()[-1], proc.stderr
