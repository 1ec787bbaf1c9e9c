"""sac_jax.load_policy and experiments.watch on tiny runs the real CLI trains.

The checkpoint is restored here independently (orbax, the whole tree, no template) and
the learner rebuilt with `learners.config_from` (experiments/run.py's), so load_policy's
partial restore and config rebuild are checked against the training code's view.
"""

import json
import os
import re

import gymnasium as gym
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cli_util import cli
from sac_jax import ddpg, envs, learners
from sac_jax import policy as policy_lib
import sac_jax

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sharding info not provided when restoring"),
    # RescaleAction on Pendulum's float64 bounds; imageio's reader starts ffmpeg (fork+exec).
    pytest.mark.filterwarnings("ignore:.*precision lowered by casting"),
    pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")]

# The shapes of tests/test_cli.py's and test_value_free.py's / test_ddpg_cli.py's tiny runs,
# so the persistent XLA cache (conftest.py) can share their compiled steps.
PAPER = ["--env_id=Pendulum-v1", "--num_seeds=2", "--seed=3", "--start_steps=100",
         "--num_components=2", "--hidden_sizes=16,16", "--batch_size=16",
         "--buffer_size=1000", "--eval_episodes=2", "--log_every_s=0",
         "--total_env_steps=300", "--eval_every=300", "--checkpoint_every=200"]
TINY = ["--env_id=Pendulum-v1", "--hidden_sizes=16,16", "--batch_size=16",
        "--start_steps=100", "--buffer_size=400", "--total_env_steps=300",
        "--eval_every=300", "--eval_episodes=1", "--num_seeds=2", "--log_every_s=0"]
SMALL = ["--hidden_sizes=16,16", "--batch_size=16"]  # after an overlay flagfile


def train(run_dir, *args):
  res = cli("experiments.run", *args, f"--run_dir={run_dir}")
  assert res.returncode == 0, res.stderr[-3000:]
  return str(run_dir)


def reference(run_dir, step):
  """(agent, the whole stacked train state as dicts) at `step`, restored independently."""
  with open(os.path.join(run_dir, "run.json")) as f:
    flags = json.load(f)
  config = learners.config_from(flags)  # as experiments/run.py builds it
  assert policy_lib.config_from_flags(flags) == config
  obs_dim, act_dim = envs.env_dims(flags["env_id"])
  tree = ocp.PyTreeCheckpointer().restore(
      os.path.abspath(os.path.join(run_dir, "checkpoints", str(step), "tree")))
  return learners.make(config, obs_dim, act_dim), tree["train"]


def member(train, i, name):
  return jax.tree.map(lambda x: np.asarray(x)[i], train[name])


def observations(env_id, n, seed=0):
  space = gym.make(env_id).observation_space
  rng = np.random.default_rng(seed)
  low = np.maximum(space.low, -3.0)
  high = np.minimum(space.high, 3.0)
  return rng.uniform(low, high, size=(n,) + space.shape).astype(np.float32)


def to_env(env_id, unit):
  """The training envs' own map: gymnasium's RescaleAction(env, -1, 1)."""
  return gym.wrappers.RescaleAction(gym.make(env_id), -1.0, 1.0).action(np.asarray(unit))


def check_deterministic(run_dir, step, members, atol=1e-5):
  """load_policy's action == Agent.eval_action on the checkpoint's params, per member."""
  ag, state = reference(run_dir, step)
  env_id = policy_lib.read_flags(run_dir)["env_id"]
  obs = observations(env_id, 8)
  out = {}
  for i in members:
    pol = sac_jax.load_policy(run_dir, member=i, step=step)
    want = np.asarray(jax.jit(ag.eval_action)(member(state, i, "policy_params"),
                                              member(state, i, "q_params"), obs))
    np.testing.assert_allclose(pol.unit(obs), want, atol=atol)
    np.testing.assert_allclose(pol(obs), to_env(env_id, want), atol=atol)
    np.testing.assert_allclose(pol(obs[3]), pol(obs)[3], atol=atol)  # one obs, no batch
    assert pol(obs[3]).shape == (ag.act_dim,) and pol(obs).shape == (8, ag.act_dim)
    out[i] = pol.unit(obs)
  return out, ag, state, obs


def rollout_returns(run_dir, member_index, episodes, seed, max_steps):
  """What watch should print: deterministic returns from env seeds seed + e."""
  pol = sac_jax.load_policy(run_dir, member=member_index)
  env = gym.make(pol.env_id, max_episode_steps=max_steps)
  out = []
  for e in range(episodes):
    obs, _ = env.reset(seed=seed + e)
    total, done = 0.0, False
    while not done:
      obs, r, term, trunc, _ = env.step(pol(obs))
      total += float(r)
      done = term or trunc
    out.append(total)
  return out


def watched_returns(stdout):
  eps = [float(x) for x in re.findall(r"episode \d+ \(env seed \d+\): return (\S+)", stdout)]
  mean = re.search(r"mean return (\S+) ±", stdout)
  return eps, float(mean.group(1)) if mean else None


def assert_real_image(frame):
  frame = np.asarray(frame)
  assert frame.ndim == 3 and frame.shape[-1] == 3 and frame.shape[0] >= 64, frame.shape
  colors = np.unique(frame.reshape(-1, 3), axis=0)
  assert len(colors) > 8, f"first frame has {len(colors)} colors: not a rendered scene"


def test_paper_config_policy_errors_and_watch_gif(tmp_path):
  run_dir = train(tmp_path / "run", *PAPER)  # checkpoints at 200 and 300
  got, ag, state, obs = check_deterministic(run_dir, 300, members=(0, 1))
  assert np.max(np.abs(got[0] - got[1])) > 1e-3  # two members, two policies

  # An earlier checkpoint: its own params, not the latest's.
  early, *_ = check_deterministic(run_dir, 200, members=(0,))
  assert np.max(np.abs(early[0] - got[0])) > 1e-4

  # Stochastic: Agent.sample_action with the caller's key, in the env's bounds.
  pol = sac_jax.load_policy(run_dir, member=1, deterministic=False)
  many = np.repeat(obs[:1], 64, axis=0)
  key = jax.random.PRNGKey(7)
  want = jax.jit(ag.sample_action)(member(state, 1, "policy_params"), many, key)
  np.testing.assert_allclose(pol.unit(many, key), want, atol=1e-5)
  a, b = pol(many, key), pol(many, jax.random.PRNGKey(8))
  assert np.all(a >= -2.0) and np.all(a <= 2.0)  # Pendulum's torque bounds
  assert np.std(a) > 1e-3 and np.max(np.abs(a - b)) > 1e-3
  np.testing.assert_array_equal(pol(many, key), a)
  assert pol(obs[0], 3).shape == (1,)  # an int seed is a key too

  # Clear errors.
  with pytest.raises(ValueError, match=r"member=2 is out of range: .* has 2 member\(s\)"):
    sac_jax.load_policy(run_dir, member=2)
  with pytest.raises(ValueError, match=r"step=250: .*available steps: 200, 300"):
    sac_jax.load_policy(run_dir, step=250)
  with pytest.raises(ValueError, match="needs a PRNG key"):
    pol(obs)
  with pytest.raises(ValueError, match="deterministic and takes no key"):
    sac_jax.load_policy(run_dir)(obs, key)
  with pytest.raises(ValueError, match=r"expected \[3\] or \[n, 3\]"):
    pol(obs[:, :2], key)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match=f"run_dir='{empty}' has no run.json"):
    sac_jax.load_policy(str(empty))
  (empty / "run.json").write_text((tmp_path / "run" / "run.json").read_text())
  with pytest.raises(ValueError, match=f"run_dir='{empty}' holds no checkpoint"):
    sac_jax.load_policy(str(empty))

  # watch: returns as a rollout of load_policy gives them, and a GIF (pygame rendering).
  gif = tmp_path / "pendulum.gif"
  res = cli("experiments.watch", run_dir, "--member=1", "--episodes=2",
            "--max_episode_steps=25", f"--video={gif}")
  assert res.returncode == 0, res.stderr[-3000:]
  eps, mean = watched_returns(res.stdout)
  want = rollout_returns(run_dir, 1, episodes=2, seed=0, max_steps=25)
  np.testing.assert_allclose(eps, want, atol=0.06)
  assert mean == pytest.approx(np.mean(want), abs=0.06)
  from PIL import Image
  assert gif.stat().st_size > 1000
  assert "(52 frames at 30 fps" in res.stdout  # per episode: the reset frame + 25 steps
  with Image.open(gif) as im:
    assert im.n_frames > 1
    assert_real_image(im.convert("RGB"))
  bad = cli("experiments.watch", run_dir, "--member=5")
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines() == [
      f"error: member=5 is out of range: '{run_dir}' has 2 member(s), 0 to 1"]


def test_modern_value_free_config(tmp_path):
  run_dir = train(tmp_path / "run", *TINY, "--flagfile=experiments/flags/modern.flags",
                  *SMALL)  # test_value_free.py's shapes
  flags = policy_lib.read_flags(run_dir)
  assert not flags["value_network"] and flags["num_q"] == 2 and flags["auto_alpha"]
  got, ag, state, obs = check_deterministic(run_dir, 300, members=(0, 1))
  assert np.max(np.abs(got[0] - got[1])) > 1e-3
  pol = sac_jax.load_policy(run_dir, member=0, deterministic=False)
  key = jax.random.PRNGKey(1)
  np.testing.assert_allclose(
      pol.unit(obs, key),
      jax.jit(ag.sample_action)(member(state, 0, "policy_params"), obs, key), atol=1e-5)


def test_ddpg(tmp_path):
  run_dir = train(tmp_path / "run", *TINY, "--flagfile=experiments/flags/ddpg.flags",
                  *SMALL)
  got, ag, state, obs = check_deterministic(run_dir, 300, members=(0, 1))
  assert isinstance(ag, ddpg.DDPGAgent)
  mu = jax.jit(ag.policy.apply)(member(state, 0, "policy_params"), obs)  # mu(s), no noise
  np.testing.assert_allclose(got[0], mu, atol=1e-6)
  assert np.max(np.abs(got[0] - got[1])) > 1e-4
  # Stochastic: the exploration action clip(mu + N(0, expl_noise^2), -1, 1).
  pol = sac_jax.load_policy(run_dir, member=0, deterministic=False)
  key = jax.random.PRNGKey(3)
  noise = float(member(state, 0, "hparams")["expl_noise"])
  assert noise == pytest.approx(0.1)
  np.testing.assert_allclose(pol.unit(obs, key), jax.jit(ddpg.explore)(mu, key, noise),
                             atol=1e-6)
  a = pol(obs, key)
  assert np.all(np.abs(a) <= 2.0) and np.max(np.abs(a - pol(obs, 4))) > 1e-3


def test_quickstart_flagfile_mujoco_policy_and_watch_mp4(tmp_path):
  """The quickstart's run (InvertedPendulum-v5, MuJoCo) at a tiny budget: the policy and a
  video rendered offscreen by MuJoCo."""
  run_dir = train(tmp_path / "run", "--flagfile=experiments/flags/quickstart.flags",
                  "--total_env_steps=200", "--start_steps=100", "--eval_every=200",
                  "--eval_episodes=1", "--num_seeds=2", "--log_every_s=0")
  got, *_ = check_deterministic(run_dir, 200, members=(0, 1))
  assert np.max(np.abs(got[0] - got[1])) > 1e-4
  video = tmp_path / "pendulum.mp4"
  res = cli("experiments.watch", run_dir, "--member=1", "--episodes=2", f"--video={video}")
  assert res.returncode == 0, res.stderr[-3000:]
  eps, mean = watched_returns(res.stdout)
  want = rollout_returns(run_dir, 1, episodes=2, seed=0, max_steps=None)
  np.testing.assert_allclose(eps, want, atol=0.06)
  assert mean == pytest.approx(np.mean(want), abs=0.06)
  assert "MuJoCo offscreen" in res.stdout
  assert video.stat().st_size > 1000
  import imageio.v2 as imageio
  with imageio.get_reader(str(video)) as reader:
    assert_real_image(reader.get_data(0))
