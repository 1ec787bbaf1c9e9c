r"""Roll a trained policy out on its run's env: episode returns, and a video.

    python -m experiments.watch runs/<run> --member=0 --episodes=3 --video=out.mp4
    python -m experiments.watch runs/<run> --video=out.gif --nodeterministic --seed=1

Loads member `--member` of the run directory with `sac_jax.load_policy` (the latest
checkpoint, or `--step`), makes the run's env (its id from run.json), plays `--episodes`
episodes (episode e reset with seed `--seed` + e), prints each episode's return and their
mean, and with `--video` writes every frame of every episode to a video: `.gif` through
Pillow, anything else (.mp4, .mov, .mkv, .webm, .avi) through imageio + imageio-ffmpeg
(`pip install -e '.[video]'`, which ships its own ffmpeg binary).

Frames are rendered offscreen with `gym.make(env_id, render_mode="rgb_array")`:
- MuJoCo envs (InvertedPendulum, HalfCheetah, Hopper, ...) through OpenGL without a
  display: with MUJOCO_GL unset, EGL is tried, then OSMesa, and the first that renders is
  used (set MUJOCO_GL=egl or osmesa to choose). EGL needs the system libraries libegl1,
  libegl-mesa0 and libgl1-mesa-dri (Debian/Ubuntu package names), OSMesa libosmesa6.
- classic-control envs (Pendulum-v1, MountainCarContinuous-v0) through pygame (in the
  `video` extra).
Without `--video` nothing is rendered. The policy acts deterministically (the paper's
evaluation action) unless `--nodeterministic` (a sample per step, from PRNG key `--seed`).
Bad input (no such run, member or step, an unknown video format, no renderer) is one line
on stderr, exit status 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

from absl import flags
from absl import logging

from experiments import cli

FLAGS = flags.FLAGS
flags.DEFINE_integer("member", 0, "member of the run to load (seed / sweep setting index)")
flags.DEFINE_integer("step", None, "checkpoint env step to load (default: the latest)")
flags.DEFINE_integer("episodes", 3, "episodes to play")
flags.DEFINE_string("video", None, "write the frames of every episode here: .gif "
                    "(Pillow) or .mp4/.mov/.mkv/.webm/.avi (imageio-ffmpeg)")
flags.DEFINE_bool("deterministic", True, "the paper's evaluation action; "
                  "--nodeterministic samples actions (SAC: from the policy; DDPG: mu(s) "
                  "plus its exploration noise)")
flags.DEFINE_integer("seed", 0, "episode e starts from env seed seed + e; the PRNG seed "
                     "of a stochastic policy")
flags.DEFINE_integer("max_episode_steps", 0, "cut each episode after this many steps "
                     "(0: the env's own time limit)")
flags.DEFINE_float("fps", 0.0, "video frame rate (0: the env's render_fps)")

FFMPEG_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
MUJOCO_GL_BACKENDS = ("egl", "osmesa")
MUJOCO_LIBS = ("MuJoCo offscreen rendering needs EGL or OSMesa: apt-get install -y "
               "libegl1 libegl-mesa0 libgl1-mesa-dri (MUJOCO_GL=egl) or libosmesa6 "
               "(MUJOCO_GL=osmesa)")
VIDEO_EXTRA = "pip install -e '.[video]'"
# Renders one frame of an empty MuJoCo model with the backend named by MUJOCO_GL.
_PROBE = ("import mujoco\n"
          "m = mujoco.MjModel.from_xml_string('<mujoco/>')\n"
          "r = mujoco.Renderer(m, 16, 16)\n"
          "r.update_scene(mujoco.MjData(m))\n"
          "r.render()\n")


UsageError = cli.UsageError  # bad input: one line, exit status 2


# ---------------------------------------------------------------- rendering
def is_mujoco(env_id: str) -> bool:
  import gymnasium as gym
  try:
    entry = gym.spec(env_id).entry_point
  except Exception:  # noqa: BLE001 - an unknown id is reported by load_policy
    return False
  name = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
  return "mujoco" in str(name)


def choose_mujoco_gl() -> str:
  """MUJOCO_GL for offscreen rendering: the user's, else the first of EGL and OSMesa that
  renders a frame in a subprocess (MuJoCo reads it once, at import). Sets it; UsageError
  naming the system libraries if none works."""
  chosen = os.environ.get("MUJOCO_GL")
  if chosen:
    return chosen
  for backend in MUJOCO_GL_BACKENDS:
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    try:
      ok = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                          timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
      ok = False
    if ok:
      os.environ["MUJOCO_GL"] = backend
      return backend
  raise UsageError(f"no MuJoCo renderer works here (tried MUJOCO_GL={', '.join(MUJOCO_GL_BACKENDS)}); "
                   + MUJOCO_LIBS)


class VideoWriter:
  """Frames (uint8 [h, w, 3]) to `path`: a GIF through Pillow, else ffmpeg via imageio."""

  def __init__(self, path: str, fps: float):
    self.path, self.fps, self.count = path, fps, 0
    self.gif = path.lower().endswith(".gif")
    self.frames: list = []
    self.writer = None
    if not self.gif:
      try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401 - the ffmpeg binary imageio uses
      except ImportError as e:
        raise UsageError(f"--video={path} needs imageio and imageio-ffmpeg ({e.name} is "
                         f"missing): {VIDEO_EXTRA}, or write a .gif") from None
      # macro_block_size=2: libx264's yuv420p needs even sizes (odd ones are resized).
      self.writer = imageio.get_writer(path, fps=fps, codec="libx264", quality=8,
                                       macro_block_size=2, ffmpeg_log_level="error")

  def append(self, frame) -> None:
    self.count += 1
    if self.gif:
      from PIL import Image
      # One byte per pixel in memory: a GIF holds every frame until it is written.
      self.frames.append(Image.fromarray(frame).convert("P", palette=Image.ADAPTIVE))
    else:
      self.writer.append_data(frame)

  def close(self) -> None:
    if self.gif:
      if self.frames:
        self.frames[0].save(self.path, save_all=True, append_images=self.frames[1:],
                            duration=max(int(round(1000 / self.fps)), 10), loop=0)
      self.frames = []
    elif self.writer is not None:
      self.writer.close()
      self.writer = None


def render(env, env_id: str):
  """One rgb frame; a missing renderer becomes one UsageError line."""
  import gymnasium as gym
  try:
    frame = env.render()
  except gym.error.DependencyNotInstalled as e:
    raise UsageError(f"rendering {env_id} needs a package that is not installed "
                     f"({str(e).splitlines()[0]}): {VIDEO_EXTRA}") from None
  except Exception as e:  # noqa: BLE001 - OpenGL / MuJoCo context failures
    if "mujoco" in type(e).__module__.lower() or "GL" in str(e) or "egl" in str(e).lower():
      raise UsageError(f"rendering {env_id} failed with MUJOCO_GL="
                       f"{os.environ.get('MUJOCO_GL')} ({type(e).__name__}: "
                       f"{str(e).splitlines()[0] if str(e) else ''}); {MUJOCO_LIBS}") from None
    raise
  if frame is None:
    raise UsageError(f"{env_id} rendered no frame in rgb_array mode")
  return frame


# ---------------------------------------------------------------- rollout
def rollout(policy, env, episodes: int, seed: int, writer: VideoWriter | None,
            deterministic: bool) -> list[tuple[float, int]]:
  """(return, steps) per episode; episode e starts from env seed seed + e."""
  import jax
  key = jax.random.PRNGKey(seed)
  out = []
  for e in range(episodes):
    obs, _ = env.reset(seed=seed + e)
    if writer is not None:
      writer.append(render(env, policy.env_id))
    total, steps, done = 0.0, 0, False
    while not done:
      if deterministic:
        action = policy(obs)
      else:
        key, sub = jax.random.split(key)
        action = policy(obs, sub)
      obs, reward, terminated, truncated, _ = env.step(action)
      total += float(reward)
      steps += 1
      done = terminated or truncated
      if writer is not None:
        writer.append(render(env, policy.env_id))
    out.append((total, steps))
  return out


def _peek_env_id(run_dir: str) -> str | None:
  """The env id in run.json without importing jax (None: load_policy says what is wrong)."""
  import json
  try:
    with open(os.path.join(run_dir, "run.json")) as f:
      return json.load(f).get("env_id")
  except (OSError, ValueError, AttributeError):
    return None


def main(argv) -> int:
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  # pygame (classic-control rendering) draws offscreen; without a display SDL's default
  # video driver complains (XDG_RUNTIME_DIR), the dummy one does not.
  os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
  warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")
  # imageio starts ffmpeg with subprocess (fork, then exec at once): safe with JAX's threads.
  warnings.filterwarnings("ignore", message=r".*os\.fork\(\) was called.*",
                          category=RuntimeWarning)
  if len(argv) != 2:
    raise UsageError("expected one run directory: python -m experiments.watch RUN_DIR "
                     "[--member=i] [--episodes=n] [--video=out.mp4]")
  run_dir = argv[1]
  if FLAGS.episodes < 1:
    raise UsageError(f"--episodes={FLAGS.episodes}: must be >= 1")
  if FLAGS.max_episode_steps < 0:
    raise UsageError(f"--max_episode_steps={FLAGS.max_episode_steps}: must be >= 0")
  if FLAGS.fps < 0:
    raise UsageError(f"--fps={FLAGS.fps:g}: must be > 0 (0: the env's)")
  video = FLAGS.video
  if video is not None:
    if not video.lower().endswith((".gif",) + FFMPEG_SUFFIXES):
      raise UsageError(f"--video={video}: the name must end in .gif or one of "
                       + ", ".join(FFMPEG_SUFFIXES))
    parent = os.path.dirname(os.path.abspath(video))
    if not os.path.isdir(parent):
      raise UsageError(f"--video={video}: directory {parent} does not exist")

  backend = None
  if video is not None:
    env_id = _peek_env_id(run_dir)
    if env_id is not None and is_mujoco(env_id):
      # Before anything imports mujoco, and before jax (whose threads dislike a fork).
      backend = choose_mujoco_gl()
  from sac_jax import envs
  from sac_jax import policy as policy_lib
  try:
    policy = policy_lib.load_policy(run_dir, member=FLAGS.member, step=FLAGS.step,
                                    deterministic=FLAGS.deterministic)
  except ValueError as e:
    raise UsageError(str(e)) from None

  import gymnasium as gym
  import numpy as np
  kwargs = {"render_mode": "rgb_array"} if video is not None else {}
  if FLAGS.max_episode_steps:
    kwargs["max_episode_steps"] = FLAGS.max_episode_steps
  env_id = policy.env_id
  envs.show_mujoco_warnings_once()
  env = gym.make(env_id, **kwargs)
  kind = "deterministic" if FLAGS.deterministic else f"stochastic (PRNG seed {FLAGS.seed})"
  print(f"[{env_id}] {policy.algorithm} member {policy.member} of {policy.num_members} at "
        f"env step {policy.step}, {kind} actions, {FLAGS.episodes} episode(s) from env "
        f"seed {FLAGS.seed}", flush=True)
  writer = None
  try:
    if video is not None:
      fps = FLAGS.fps or float(env.metadata.get("render_fps") or 30)
      writer = VideoWriter(video, fps)
    results = rollout(policy, env, FLAGS.episodes, FLAGS.seed, writer,
                      FLAGS.deterministic)
    if writer is not None:
      writer.close()
  finally:
    env.close()
  returns = np.array([r for r, _ in results])
  for i, (ret, steps) in enumerate(results):
    print(f"[{env_id}] episode {i} (env seed {FLAGS.seed + i}): return {ret:.1f} over "
          f"{steps} steps", flush=True)
  print(f"[{env_id}] mean return {returns.mean():.1f} ± {returns.std():.1f} over "
        f"{len(returns)} episode(s)", flush=True)
  if writer is not None:
    how = f"MuJoCo offscreen, MUJOCO_GL={backend}" if backend else "rgb_array"
    print(f"[{env_id}] video: {video} ({writer.count} frames at {writer.fps:g} fps, "
          f"{how})", flush=True)
  return 0


if __name__ == "__main__":
  cli.run(main)
