"""Kill and resume the real CLI: SIGKILL at an arbitrary moment loses and doubles no
evaluation row; SIGTERM writes a checkpoint and exits cleanly."""

import os
import signal
import subprocess
import sys
import time

from cli_util import ROOT, read_rows

TINY = ["--env_id=Pendulum-v1", "--num_seeds=2", "--seed=3", "--start_steps=100",
        "--num_components=2", "--hidden_sizes=16,16", "--batch_size=16",
        "--buffer_size=1000", "--eval_episodes=2", "--log_every_s=1"]
CMD = [sys.executable, "-m", "experiments.run"]


def checkpoints(run_dir):
  path = os.path.join(run_dir, "checkpoints")
  if not os.path.isdir(path):
    return []
  return sorted(int(d) for d in os.listdir(path) if d.isdigit())


def wait_for(cond, proc, timeout=240):
  t0 = time.time()
  while not cond():
    assert proc.poll() is None, f"exited early:\n{proc.communicate()}"
    assert time.time() - t0 < timeout, "timed out waiting"
    time.sleep(0.02)


def test_sigkill_then_resume_loses_and_doubles_no_row(tmp_path):
  run_dir = str(tmp_path / "run")
  args = CMD + TINY + ["--total_env_steps=1000", "--eval_every=100",
                       "--checkpoint_every=200", f"--run_dir={run_dir}"]
  proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  # Kill with an evaluation row past the latest checkpoint (3 evaluations, checkpoint at
  # 200): the resume must drop the row at 300 and redo it.
  wait_for(lambda: len(read_rows(run_dir)) >= 6 and checkpoints(run_dir), proc)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  before = read_rows(run_dir)
  ckpt = max(checkpoints(run_dir))
  assert before and ckpt >= 200

  res = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stdout + res.stderr
  assert "Traceback" not in res.stderr
  assert f"resumed from the checkpoint at env step {ckpt}" in res.stdout, res.stdout
  after = read_rows(run_dir)
  keys = [(int(r["env_step"]), int(r["member"])) for r in after]
  # Every (env_step, member) of the grid exactly once, in order.
  assert keys == [(s, m) for s in range(100, 1001, 100) for m in (0, 1)], keys
  # Rows up to the checkpoint are the ones written before the kill, untouched.
  kept = [r for r in before if int(r["env_step"]) <= ckpt]
  assert after[:len(kept)] == kept
  assert len(before) > len(kept) or ckpt == int(before[-1]["env_step"])
  assert checkpoints(run_dir)[-1] == 1000


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path):
  run_dir = str(tmp_path / "run")
  args = CMD + TINY + ["--total_env_steps=100000", "--eval_every=100",
                       "--checkpoint_every=0", f"--run_dir={run_dir}"]
  proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  wait_for(lambda: len(read_rows(run_dir)) >= 2, proc)
  assert checkpoints(run_dir) == []  # checkpoint_every=0: none before the signal
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, out + err
  assert "Traceback" not in err
  assert "SIGTERM" in err and "checkpoint written" in err
  (ckpt,) = checkpoints(run_dir)
  assert ckpt >= 100
  rows = read_rows(run_dir)
  assert rows and int(rows[-1]["env_step"]) <= ckpt
  import json
  summary = json.load(open(os.path.join(run_dir, "summary.json")))
  assert summary["complete"] is False and summary["env_steps"] == ckpt

  # The resumed run picks up at the signal's step (between evaluation points) and goes on
  # with the same evaluation grid.
  res = subprocess.run(CMD + [f"--flagfile={run_dir}/flags.txt",
                              f"--total_env_steps={ckpt - ckpt % 100 + 200}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stdout + res.stderr
  assert f"resumed from the checkpoint at env step {ckpt}" in res.stdout
  steps = sorted({int(r["env_step"]) for r in read_rows(run_dir)})
  assert steps == list(range(100, ckpt - ckpt % 100 + 201, 100))


def test_a_checkpoint_of_an_older_version_is_refused_in_one_line(tmp_path):
  """Before the learning rates moved to HParams only, every optimizer state was an
  optax.inject_hyperparams(optax.adam) state holding its rate. Such a checkpoint is
  readable, so it is refused in one line naming the older version (experiments/run.py
  prints it as its error line), and not set aside as damaged."""
  import jax
  import optax
  import pytest
  from sac_jax import agent, checkpoint
  ag = agent.Agent(agent.SACConfig(num_components=1, hidden_sizes=(4,), batch_size=2,
                                   buffer_size=8), 3, 1)
  state = ag.init_members(jax.random.split(jax.random.PRNGKey(0), 2))
  old_adam = jax.vmap(lambda p, lr: optax.inject_hyperparams(optax.adam)(
      learning_rate=lr).init(p))
  h = state.hparams
  old = state._replace(policy_opt_state=old_adam(state.policy_params, h.lr_policy),
                       q_opt_state=old_adam(state.q_params, h.lr_q),
                       v_opt_state=old_adam(state.v_params, h.lr_v),
                       alpha_opt_state=old_adam(state.log_alpha, h.lr_alpha))
  directory = str(tmp_path / "checkpoints")
  ckpt = checkpoint.Checkpointer(directory)
  ckpt.save(100, {"train": old}, {"env_step": 100})
  ckpt.close()
  ckpt = checkpoint.Checkpointer(directory)  # as a resuming process opens it
  with pytest.raises(checkpoint.IncompatibleCheckpoint) as e:
    ckpt.restore_latest({"train": state})
  message = str(e.value)
  assert "\n" not in message and "older" in message and "hyperparams" in message, message
  assert ckpt.all_steps() == [100] and not os.path.exists(directory + ".corrupt")
  # This version's own checkpoint restores.
  ckpt.save(200, {"train": state}, {"env_step": 200})
  ckpt.close()
  ckpt = checkpoint.Checkpointer(directory)
  step, tree, host = ckpt.restore_latest({"train": state})
  assert step == 200 and host == {"env_step": 200}
  ckpt.close()
