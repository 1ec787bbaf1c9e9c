"""The TensorBoard recorder (sac_jax.tensorboard, the `tensorboard` extra): the scalars
read back from the event files, with a sweep setting whose member diverges."""

import glob
import os
import struct

import numpy as np
import pytest

from sac_jax import agent, loop, recorders, tensorboard
from tensorboardX.proto import event_pb2

CFG = agent.SACConfig(num_components=2, hidden_sizes=(16, 16), batch_size=16,
                      buffer_size=1000, start_steps=100)


def read_scalars(logdir):
  """{tag: [(step, value)]} from every event file under `logdir` (TFRecord framing: length,
  its CRC, the Event proto, its CRC)."""
  out = {}
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    data, pos = open(path, "rb").read(), 0
    while pos < len(data):
      (n,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
      pos += 12 + n + 4
      for v in event.summary.value:
        out.setdefault(v.tag, []).append((event.step, v.simple_value))
  return out


def test_scalars_per_member_per_setting_and_training_metrics(tmp_path):
  logdir = str(tmp_path / "tb")
  columns = (dict(setting="rs=1"), dict(setting="rs=3e38"))
  lc = loop.LoopConfig("Pendulum-v1", num_members=2, seed=3, total_env_steps=200,
                       eval_every=100, eval_episodes=2, log_every_s=0,
                       member_columns=columns, member_seeds=(3, 3))
  hp = agent.HParams.from_config(CFG).stack(2, reward_scale=[1.0, 3e38])
  history = loop.train(CFG, lc, hp, recorders=[recorders.Progress("t", every_s=0),
                                               tensorboard.TensorBoard(logdir)])
  got = read_scalars(logdir)
  means = np.array([r.all_means for r in history])  # [evals, members]
  assert [s for s, _ in got["eval_return/member_0"]] == [100, 200]
  np.testing.assert_allclose([v for _, v in got["eval_return/member_0"]], means[:, 0],
                             rtol=1e-6)  # stored as float32
  # Member 1 diverged at its first update (env step 100): no return after it, and its
  # setting's mean stops there too.
  assert [s for s, _ in got["eval_return/member_1"]] == [100]
  assert [s for s, _ in got["eval_return_mean/rs_1"]] == [100, 200]
  assert [s for s, _ in got["eval_return_mean/rs_3e38"]] == [100]
  np.testing.assert_allclose(got["eval_return_mean/rs_3e38"][0][1], means[0, 1], rtol=1e-6)
  # Training metrics from the first update on (none at 100), none for the diverged member.
  assert [s for s, _ in got["train/q_loss/member_0"]] == [200]
  assert got["train/q_loss/member_0"][0][1] == pytest.approx(
      float(history[1].train_metrics["q_loss"][0]), rel=1e-6)
  assert not [t for t in got if t.startswith("train/") and t.endswith("member_1")]
