r"""Throughput benchmark (../shared/BENCHMARKS.md): sac_jax beside stable-baselines-jax.

    python -m experiments.bench            # full protocol on HalfCheetah-v5
    python -m experiments.bench --quick    # about a minute: smaller M and step counts

Measures, for the equal-work configuration (twin Q, reparameterized K = 1, automatic
temperature, 256 x 256, batch 256, G = 1, no V network (SAC 2018b's value-free critic,
target Q networks): what the peers run) and the paper configuration (V + Q, GMM K = 4,
likelihood ratio, 128 x 128, batch 128):
  - the update alone: microseconds per gradient step per member, M = 1, 4, 16, 64, with
    the update's FLOPs from XLA's cost analysis and the achieved GFLOP/s against the
    machine's fp32 peak;
  - end to end with the real host loop (`sac_jax.loop.train`): learning-phase SPS
    (steps `warmup_steps` to `warmup_steps + measure_steps`), aggregate and per member,
    and peak RSS, each case in its own process;
  - the peer, stable-baselines-jax SAC, with the same settings and steps, in its own
    process, when the `bench` extra is installed.
`--loops=sync,overlap` runs each end-to-end sac_jax case with the synchronous loop and with
`LoopConfig.overlap` (two device calls per env step, the update running while the envs
step; actions one update behind). `--rounds=N` repeats the end-to-end cases N times,
alternating the peer and ours within each round (so a slow spell of the machine hits both),
and reports the median of each case over rounds, its range, and the race as the ratio of
the medians beside the per-round ratios. `--async_envs` steps the end-to-end sac_jax cases'
envs in subprocesses (for many members on a machine with many cores: a GPU host).
`--op_profile` splits the fused per-env-step call by kind of operation (XLA's thunks on a
CPU, kernels on a GPU) from a jax.profiler trace: where a step's time goes beyond "update"
and "overhead".

Prints a table and writes JSON (`--out`).
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

from absl import flags

from experiments import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line's flags: defined only when bench runs as a program, so importing
  its functions (the tests do) does not clash with experiments.run's flags."""
  flags.DEFINE_bool("quick", False, "A one-minute version: fewer members and steps.")
  flags.DEFINE_list("update_members", ["1", "4", "16", "64"],
                    "M values for the update alone.")
  flags.DEFINE_list("members", ["1", "4", "16"], "M values end to end.")
  flags.DEFINE_list("configs", ["equal_work", "paper"], "Configurations to measure.")
  flags.DEFINE_string("env_id", "HalfCheetah-v5", "Task for the end-to-end runs.")
  flags.DEFINE_integer("warmup_steps", 5000, "Random-action steps before timing.")
  flags.DEFINE_integer("measure_steps", 10000, "Timed learning-phase steps.")
  flags.DEFINE_integer("update_repeats", 5, "Timed repeats of the update (median).")
  flags.DEFINE_integer("update_steps", 50, "Gradient steps per timed update call.")
  flags.DEFINE_bool("peer", True, "Also run stable-baselines-jax (needs the bench extra).")
  flags.DEFINE_bool("end_to_end", True, "Run the end-to-end host-loop cases.")
  flags.DEFINE_bool("update_only", True, "Run the update-alone cases.")
  flags.DEFINE_float("peak_gflops", None, "fp32 peak of the device; default: estimated "
                     "for a CPU as cores x clock x 32 FLOP/cycle (AVX-512 FMA).")
  flags.DEFINE_string("out", "bench.json", "Where the JSON results go.")
  flags.DEFINE_list("loops", ["sync"], "Host loops of the end-to-end sac_jax cases: sync "
                    "and/or overlap (LoopConfig.overlap: act, then dispatch the update "
                    "while the envs step; actions one update behind).")
  flags.DEFINE_bool("async_envs", False, "Step the end-to-end sac_jax cases' envs in "
                    "subprocesses (LoopConfig.async_envs; for many members on many cores).")
  flags.DEFINE_integer("rounds", 1, "Repeat the end-to-end cases this many times, peer and "
                       "ours alternating within each round; report medians over rounds.")
  flags.DEFINE_bool("reporting", False, "Also measure the share of wall time spent "
                    "evaluating and writing the run directory (paper config, M = 1, with a "
                    "run directory) at the paper's, the CLI's and the reproduction's "
                    "evaluation protocols.")
  flags.DEFINE_bool("profile", False, "Also break one member's learning-phase env step "
                    "into its parts (update alone, the fused call's dispatch and transfers, "
                    "env step, host rest), per configuration.")
  flags.DEFINE_bool("op_profile", False, "Also split the fused per-env-step call (with "
                    "its update) by kind of operation, from a jax.profiler trace (XLA's "
                    "thunks on a CPU, kernels on a GPU), per configuration, for M = the "
                    "first --update_members.")
  flags.DEFINE_integer("reporting_steps", 20000, "Learning-phase steps of each --reporting "
                       "case.")
  flags.DEFINE_string("case", None, "Internal: run one end-to-end case (JSON) and print it.")


CONFIGS = {
    # SAC 2018b exactly as the peers run it (modern.flags): no V network, target Q heads.
    "equal_work": dict(num_components=1, hidden_sizes=(256, 256), batch_size=256,
                       policy_gradient="reparameterized", num_q=2, auto_alpha=True,
                       value_network=False,
                       tau=0.005, alpha=1.0, reward_scale=1.0, reg=0.0, lr=3e-4,
                       gamma=0.99, grad_steps=1),
    "paper": dict(num_components=4, hidden_sizes=(128, 128), batch_size=128,
                  policy_gradient="likelihood_ratio", num_q=1, auto_alpha=False,
                  tau=0.01, alpha=1.0, reward_scale=1.0, reg=1e-3, lr=3e-4, gamma=0.99,
                  grad_steps=1),
}
# The paper configuration with the marginalized reparameterized mixture gradient (He et al.
# 2026; experiments/flags/mixture_mrp.flags): Q is evaluated at K actions per state.
CONFIGS["paper_mrp"] = dict(CONFIGS["paper"], policy_gradient="mixture_reparameterized")
# Evaluation protocols of --reporting: (eval_every, eval_episodes).
PROTOCOLS = {"paper (1 episode / 1000 steps)": (1000, 1),
             "CLI default (10 episodes / 1000 steps)": (1000, 10),
             "reproduction (5 episodes / 5000 steps)": (5000, 5)}


def _peak_rss_gb() -> float:
  """This process's peak resident memory. VmHWM resets at exec; ru_maxrss does not (a
  case's subprocess would report its parent's peak), so it is only the fallback."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1e6  # kB
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def cpu_peak_gflops() -> float:
  mhz = None
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("cpu MHz"):
          mhz = float(line.split(":")[1])
          break
  except OSError:
    pass
  return (os.cpu_count() or 1) * (mhz or 2600.0) / 1e3 * 32.0


def device_description() -> str:
  import jax
  d = jax.devices()[0]
  if d.platform == "cpu":
    model = platform.processor() or "cpu"
    try:
      with open("/proc/cpuinfo") as f:
        model = next(l.split(":")[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
      pass
    return f"CPU: {model}, {os.cpu_count()} cores"
  return f"{d.platform.upper()}: {d.device_kind} x {jax.device_count()}"


# --------------------------------------------------------------------------- update alone
def bench_update(config_name: str, num_members: int, obs_dim: int = 17, act_dim: int = 6,
                 steps: int = 50, repeats: int = 5) -> dict:
  """Median time of `steps` gradient steps for M members, on a filled random buffer."""
  import jax

  ag, state = _filled_state(config_name, num_members, obs_dim, act_dim)
  update = jax.jit(jax.vmap(lambda s: ag.update(s, steps)), donate_argnums=0)
  flops = gradient_step_flops(ag) * steps * num_members
  state, metrics = update(state)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    state, metrics = update(state)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t)
  sec = statistics.median(times)
  us_step_member = sec / steps / num_members * 1e6
  return dict(kind="update", config=config_name, members=num_members,
              us_per_step_per_member=us_step_member,
              us_per_step=sec / steps * 1e6,
              mflop_per_step_per_member=flops / steps / num_members / 1e6,
              gflops=flops / sec / 1e9)


def _filled_state(config_name: str, num_members: int, obs_dim: int, act_dim: int,
                  **overrides):
  """(agent, stacked state) of a configuration, its replay buffer (10,000 transitions per
  member) full of random data, so every call samples a real minibatch."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from sac_jax import agent, replay

  cfg = agent.SACConfig(**dict(CONFIGS[config_name], **overrides), buffer_size=10_000,
                        start_steps=0)
  ag = agent.Agent(cfg, obs_dim, act_dim)
  state = ag.init_members(jax.random.split(jax.random.PRNGKey(0), num_members))
  rng = np.random.default_rng(0)
  m, c = num_members, cfg.buffer_size
  data = replay.Transition(
      jnp.asarray(rng.normal(size=(m, c, obs_dim)), jnp.float32),
      jnp.asarray(rng.uniform(-1, 1, size=(m, c, act_dim)), jnp.float32),
      jnp.asarray(rng.normal(size=(m, c)), jnp.float32),
      jnp.asarray(rng.normal(size=(m, c, obs_dim)), jnp.float32),
      jnp.zeros((m, c), jnp.float32))
  return ag, state._replace(replay=replay.ReplayState(
      data, jnp.zeros((m,), jnp.int32), jnp.full((m,), c, jnp.int32)))


def gradient_step_flops(ag) -> float:
  """FLOPs of one member's gradient step, from XLA's cost analysis of the compiled,
  unbatched step (the analysis counts a scan body once and undercounts under vmap, so
  the step is analysed on its own and scaled by steps and members)."""
  import jax
  import numpy as np
  from sac_jax import replay
  b, o, a = ag.config.batch_size, ag.obs_dim, ag.act_dim
  z = lambda *s: np.zeros(s, np.float32)
  batch = replay.Transition(z(b, o), z(b, a), z(b), z(b, o), z(b))
  state = jax.eval_shape(ag.init, jax.random.PRNGKey(0))
  cost = jax.jit(ag.gradient_step).lower(state, batch, jax.random.PRNGKey(0)
                                         ).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan"))) if cost else float("nan")


# --------------------------------------------------------------------------- op profile
MATMUL_KINDS = ("dot", "ynn", "gemm", "cublas", "matmul", "convolution")


def op_kind(name: str) -> str:
  """The kind of a profiler event: its name without the numeric suffix XLA gives every
  instruction ('broadcast_select_fusion.2' and '.17' are one kind, as are 'copy.224' and
  'copy.3'; a GPU kernel's '_3' likewise); Python frames (jax.profiler names them
  '$file:line function') are one kind."""
  if name.startswith("$"):
    return "(python)"
  return re.sub(r"([._]\d+)+$", "", name)


def self_times(events: list[dict]) -> list[tuple[str, float]]:
  """(name, self time in us) of each complete ('X') trace event: its duration less that of
  the events nested directly inside it on the same thread, so an event that encloses
  others (an executor, a while loop, a conditional) keeps only its own overhead and the
  self times of a thread add up to its busy time."""
  out = []
  by_thread: dict[tuple, list[dict]] = {}
  for e in events:
    if e.get("ph") == "X" and "dur" in e:
      by_thread.setdefault((e.get("pid"), e.get("tid")), []).append(e)
  for evs in by_thread.values():
    evs.sort(key=lambda e: (e["ts"], -e["dur"]))
    stack: list[list] = []  # [end, name, self]
    for e in evs:
      start, end = float(e["ts"]), float(e["ts"]) + float(e["dur"])
      while stack and stack[-1][0] <= start:
        out.append((stack[-1][1], stack.pop()[2]))
      if stack:
        stack[-1][2] -= min(end, stack[-1][0]) - start
      stack.append([end, e["name"], float(e["dur"])])
    out.extend((name, t) for _, name, t in reversed(stack))
  return out


def run_op_profile_case(config_name: str, num_members: int, calls: int = 100,
                        obs_dim: int = 17, act_dim: int = 6, top: int = 15,
                        **overrides) -> dict:
  """Where the fused per-env-step call (`Agent.make_step`, with its update) spends its
  time, by kind of operation: `calls` calls traced with jax.profiler (perfetto trace, no
  extra package). The events named after an instruction of the compiled program are its
  operations (on a CPU XLA's thunks: one per fusion, copy, matmul, loop; on a GPU its
  kernels), their self times summed per kind (`op_kind`); the other events are the
  runtime's (dispatch, executors, waits) and Python's. The profiler adds its own cost to
  every event, so many small operations weigh more in the trace than in a real call: read
  the split between kinds and the operation count; `call_us` is timed without the
  profiler."""
  import glob
  import gzip
  import tempfile

  import jax
  import numpy as np
  from sac_jax import agent

  ag, state = _filled_state(config_name, num_members, obs_dim, act_dim, **overrides)
  step = ag.make_step()
  tr, obs = jax.device_put((agent.empty_transition(num_members, obs_dim, act_dim),
                            np.zeros((num_members, obs_dim), np.float32)))
  hlo = step.lower(state, tr, True, obs, True).compile().as_text()
  # A GPU kernel is named after its instruction with '.' and '-' made '_'.
  instructions = {n for i in re.findall(r"%([\w.\-]+) = ", hlo)
                  for n in (i, re.sub(r"[.\-]", "_", i))}

  def run(n: int):
    nonlocal state
    for _ in range(n):
      state, action, _ = step(state, tr, True, obs, True)
      np.asarray(action)

  run(10)  # compiles
  t0 = time.perf_counter()
  run(calls)
  call_us = (time.perf_counter() - t0) / calls * 1e6
  with tempfile.TemporaryDirectory() as d:
    jax.profiler.start_trace(d, create_perfetto_trace=True)
    t0 = time.perf_counter()
    run(calls)
    traced_us = (time.perf_counter() - t0) / calls * 1e6
    jax.profiler.stop_trace()
    path = sorted(glob.glob(os.path.join(d, "**", "*perfetto_trace.json.gz"),
                            recursive=True))[-1]
    with gzip.open(path) as f:
      trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  ops: dict[str, list[float]] = {}
  runtime: dict[str, float] = {}
  for name, t in self_times(events):
    if name in instructions:
      acc = ops.setdefault(op_kind(name), [0.0, 0])
      acc[0] += t
      acc[1] += 1
    elif not name.startswith("$"):
      runtime[name] = runtime.get(name, 0.0) + t
  total = sum(t for t, _ in ops.values())
  matmul = sum(t for k, (t, _) in ops.items() if any(m in k.lower() for m in MATMUL_KINDS))
  ranked = sorted(ops.items(), key=lambda kv: -kv[1][0])
  return dict(kind="op_profile", config=config_name, members=num_members, calls=calls,
              call_us=call_us, traced_call_us=traced_us, op_us_per_call=total / calls,
              ops_per_call=sum(n for _, n in ops.values()) / calls,
              matmul_share=matmul / total if total else 0.0,
              ops=[dict(op=k, us_per_call=t / calls, per_call=n / calls)
                   for k, (t, n) in ranked[:top]],
              runtime=[dict(event=k, us_per_call=t / calls) for k, t in
                       sorted(runtime.items(), key=lambda kv: -kv[1])[:5]])


# --------------------------------------------------------------------------- end to end
def run_sac_case(config_name: str, num_members: int, env_id: str, warmup: int,
                 measure: int, overlap: bool = False, async_envs: bool = False) -> dict:
  from sac_jax import agent, loop
  cfg = agent.SACConfig(**CONFIGS[config_name], buffer_size=warmup + measure,
                        start_steps=warmup)
  lc = loop.LoopConfig(env_id, num_members=num_members, seed=0,
                       total_env_steps=warmup + measure, eval_every=warmup,
                       eval_episodes=1, overlap=overlap, async_envs=async_envs)
  history = loop.train(cfg, lc)
  # The record at the end holds the SPS since the evaluation at `warmup` (evaluation
  # time excluded): the learning phase alone.
  sps = history[-1].sps
  return dict(kind="sac", config=config_name, members=num_members, overlap=overlap,
              async_envs=async_envs, env_id=env_id,
              sps_per_member=sps, sps_aggregate=sps * num_members,
              peak_rss_gb=_peak_rss_gb())


def run_peer_case(env_id: str, warmup: int, measure: int) -> dict:
  """stable-baselines-jax SAC, equal work, one process, one member."""
  import gymnasium as gym
  from sbx import SAC
  from stable_baselines3.common.callbacks import BaseCallback

  # The peer compiles its update at its first learning step; sac_jax compiles during the
  # warm-up. Start the peer's clock a few learning steps in so neither counts compiling.
  skip = min(200, measure // 10)

  class Timer(BaseCallback):
    def __init__(self):
      super().__init__()
      self.t0 = None

    def _on_step(self) -> bool:
      if self.num_timesteps == warmup + skip:
        self.t0 = time.perf_counter()
      return True

  env = gym.make(env_id)
  from experiments.peer_learning import SBX_SETTINGS
  model = SAC("MlpPolicy", env, learning_starts=warmup, buffer_size=warmup + measure,
              seed=0, verbose=0, **SBX_SETTINGS)
  from stable_baselines3.common.logger import Logger
  model.set_logger(Logger(None, []))   # the default one leaves an empty /tmp/SB3-* folder
  timer = Timer()
  model.learn(total_timesteps=warmup + measure, callback=timer)
  sec = time.perf_counter() - timer.t0
  sps = (measure - skip) / sec
  import sbx
  return dict(kind="peer", config="equal_work", members=1, env_id=env_id,
              impl=f"stable-baselines-jax {getattr(sbx, '__version__', '?')}",
              sps_per_member=sps, sps_aggregate=sps,
              peak_rss_gb=_peak_rss_gb())


def run_profile_case(config_name: str, env_id: str, warmup: int, measure: int) -> dict:
  """Where one member's learning-phase env step goes, each part timed alone on the real
  task after `warmup` steps: the fused device call (`Agent.make_step`: insert, update,
  act), the same call's transfers and dispatch (inputs already on the device vs numpy),
  the update alone (the compiled update of one gradient step), the env step, and the
  loop's host-side bookkeeping (the rest); and, to locate the call's overhead, the dispatch
  floor (a no-op call on the same TrainState), the call without its update, and one
  gradient step as its own call."""
  import jax
  import numpy as np
  from sac_jax import agent, envs, replay
  cfg = agent.SACConfig(**CONFIGS[config_name], buffer_size=warmup + measure,
                        start_steps=warmup)
  env = envs.TrainEnvs(env_id, 1, seed=0)
  obs_dim, act_dim = envs.env_dims(env_id)
  ag = agent.Agent(cfg, obs_dim, act_dim)
  state = ag.init_members(jax.random.split(jax.random.PRNGKey(0), 1))
  step_fn = ag.make_step()
  obs = env.reset()
  tr = agent.empty_transition(1, obs_dim, act_dim)
  has = False

  def one_step(state, tr, has, obs, upd):
    state, action, _ = step_fn(state, tr, has, obs, upd)
    action = np.asarray(action)
    nobs, r, term, _, after = env.step(action)
    return state, replay.Transition(obs, action, r, nobs, term), after

  for t in range(warmup):
    state, tr, obs = one_step(state, tr, has, obs, ag.ready_to_update(t))
    has = True
  n = measure
  t0 = time.perf_counter()
  for t in range(warmup, warmup + n):
    state, tr, obs = one_step(state, tr, True, obs, True)
  loop_s = (time.perf_counter() - t0) / n
  # The device call alone, numpy inputs (as the loop passes them), action fetched.
  t0 = time.perf_counter()
  for _ in range(n // 2):
    state, a, _ = step_fn(state, tr, True, obs, True)
    np.asarray(a)
  call_s = (time.perf_counter() - t0) / (n // 2)
  # The same with the inputs already on the device: the difference is the transfers.
  dtr, dobs = jax.device_put((tr, obs))
  t0 = time.perf_counter()
  for _ in range(n // 2):
    state, a, _ = step_fn(state, dtr, True, dobs, True)
    np.asarray(a)
  device_in_s = (time.perf_counter() - t0) / (n // 2)
  # To locate the call's overhead: what every call pays to pass the TrainState in and out
  # (a no-op that advances one counter, the state donated as in the step), the fused call
  # without its update (insert, act, divergence check), and one gradient step as its own
  # call (the update-alone bound runs 50 per call). Each fetches a result, as the loop does.
  noop = jax.jit(lambda s: s._replace(env_steps=s.env_steps + 1), donate_argnums=0)
  update1 = jax.jit(jax.vmap(lambda s: ag.update(s, 1)), donate_argnums=0)

  def noop_call(s):
    s = noop(s)
    np.asarray(s.env_steps)
    return s

  def no_update_call(s):
    s, a, _ = step_fn(s, dtr, True, dobs, False)
    np.asarray(a)
    return s

  def update_one_call(s):
    s, _ = update1(s)
    np.asarray(s.env_steps)
    return s

  def timed(fn, calls: int) -> float:
    nonlocal state
    state = fn(state)  # compiles
    t0 = time.perf_counter()
    for _ in range(calls):
      state = fn(state)
    return (time.perf_counter() - t0) / calls

  floor_s = timed(noop_call, n // 2)
  no_update_s = timed(no_update_call, n // 2)
  update_one_s = timed(update_one_call, n // 2)
  # The env alone.
  actions = np.random.default_rng(0).uniform(-1, 1, (n, 1, act_dim)).astype(np.float32)
  t0 = time.perf_counter()
  for i in range(n):
    env.step(actions[i])
  env_s = (time.perf_counter() - t0) / n
  env.close()
  upd = bench_update(config_name, 1, obs_dim, act_dim, steps=50, repeats=5)
  update_s = upd["us_per_step"] * 1e-6
  return dict(kind="profile", config=config_name, members=1, loop_us=loop_s * 1e6,
              call_us=call_s * 1e6, device_inputs_call_us=device_in_s * 1e6,
              update_us=update_s * 1e6, env_us=env_s * 1e6,
              transfer_us=(call_s - device_in_s) * 1e6, dispatch_floor_us=floor_s * 1e6,
              no_update_call_us=no_update_s * 1e6, update_one_call_us=update_one_s * 1e6,
              call_overhead_us=(device_in_s - update_s) * 1e6,
              host_rest_us=(loop_s - call_s - env_s) * 1e6)


class _Timed:
  """A recorder proxy that records the seconds its recorder spends in each on_eval and
  after_step call, with the env step (the loop sees the same protocol)."""

  def __init__(self, inner):
    self.inner = inner
    self.at: list[tuple[str, int, float]] = []  # (method, env step, seconds)

  def _call(self, name: str, *args):
    fn = getattr(self.inner, name, None)
    if fn is None:
      return None
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t

  def start(self, run):
    self._call("start", run)

  def restore(self, like):
    got = self._call("restore", like)
    return got[0] if got else None

  def on_eval(self, record):
    got = self._call("on_eval", record)
    if got:
      self.at.append(("on_eval", record.env_step, got[1]))

  def after_step(self, loop, snapshot):
    got = self._call("after_step", loop, snapshot)
    if got:
      self.at.append(("after_step", loop.env_step, got[1]))
    return got[0] if got else None

  def close(self, loop, complete):
    self._call("close", loop, complete)


def run_reporting_case(config_name: str, env_id: str, warmup: int, measure: int,
                       eval_every: int, eval_episodes: int) -> dict:
  """Where the learning phase's wall time goes with a run directory: training steps,
  evaluation episodes, and the recorders (metrics.csv, curves.png, progress line).

  Between two evaluations the loop's wall clock covers the earlier evaluation, its
  recorders and the training steps; the record's SPS covers the training steps alone
  (the recorders' after_step included). So evaluation + reporting = wall - steps / SPS,
  and the recorders' on_eval time is measured directly.
  """
  import tempfile
  from sac_jax import agent, loop, recorders
  cfg = agent.SACConfig(**CONFIGS[config_name], buffer_size=warmup + measure,
                        start_steps=warmup)
  with tempfile.TemporaryDirectory() as d:
    lc = loop.LoopConfig(env_id, num_members=1, seed=0, total_env_steps=warmup + measure,
                         eval_every=eval_every, eval_episodes=eval_episodes,
                         run_dir=os.path.join(d, "run"), checkpoint_every=0,
                         log_every_s=0.0)
    timed = [_Timed(r) for r in recorders.defaults(lc)]
    history = loop.train(cfg, lc, recorders=timed)
  learn = [r for r in history if r.env_step >= warmup]
  if len(learn) < 2:
    raise ValueError(f"--reporting: eval_every={eval_every} leaves fewer than two "
                     f"evaluations in {measure} learning steps")
  total = learn[-1].wall_time - learn[0].wall_time
  train = sum((b.env_step - a.env_step) / b.sps for a, b in zip(learn, learn[1:]))
  first, last = learn[0].env_step, learn[-1].env_step
  report = sum(dt for r in timed for kind, step, dt in r.at
               if kind == "on_eval" and first <= step < last)
  # Part of the training time (inside the SPS): checkpoint checks, summary.json, the
  # progress line, and the redraws at checkpoints.
  after = sum(dt for r in timed for kind, step, dt in r.at
              if kind == "after_step" and first < step < last)
  return dict(kind="reporting", config=config_name, members=1, eval_every=eval_every,
              eval_episodes=eval_episodes, seconds=total,
              train_share=train / total, eval_share=(total - train - report) / total,
              report_share=report / total, after_step_share=after / total,
              evaluations=len(learn) - 1)


def _subprocess_case(spec: dict) -> dict:
  cmd = [sys.executable, "-m", "experiments.bench", f"--case={json.dumps(spec)}"]
  proc = subprocess.run(cmd, capture_output=True, text=True)
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith("BENCH_RESULT "):
      return json.loads(line[len("BENCH_RESULT "):])
  tail = (proc.stderr or proc.stdout)[-2000:]
  raise RuntimeError(f"benchmark case {spec} failed (exit {proc.returncode}):\n{tail}")


def peer_available() -> bool:
  try:
    import sbx  # noqa: F401
    return True
  except ImportError:
    return False


# --------------------------------------------------------------------------- report
def update_bound(results: list[dict], config: str, members: int) -> float | None:
  """Per-member SPS if the host cost nothing: one env step of M members costs M gradient
  steps (G = 1) at the measured update-alone time."""
  u = next((r for r in results if r["kind"] == "update" and r["config"] == config
            and r["members"] == members), None)
  return 1e6 / (u["us_per_step_per_member"] * members) if u else None


def flop_bound(results: list[dict], config: str, peak: float) -> float | None:
  """Per-member SPS of one member at the machine's fp32 peak (M = 1, G = 1)."""
  u = next((r for r in results if r["kind"] == "update" and r["config"] == config), None)
  return peak * 1e3 / u["mflop_per_step_per_member"] if u else None


def _case_key(r: dict) -> tuple:
  return (r["kind"], r.get("impl", ""), r["config"], r["members"], bool(r.get("overlap")),
          bool(r.get("async_envs")))


def case_label(r: dict) -> str:
  """The table's name of an end-to-end case: the peer's impl, or sac_jax and its loop."""
  if "impl" in r:
    return r["impl"]
  return ("sac_jax" + (" (overlap)" if r.get("overlap") else "")
          + (" (async envs)" if r.get("async_envs") else ""))


def median_cases(results: list[dict]) -> list[dict]:
  """The end-to-end cases (peer and sac_jax), one row per case: the median over its rounds
  of the per-member and aggregate SPS, their range (sps_min, sps_max), n rounds, and the
  largest peak RSS; in the order the cases first ran."""
  groups: dict[tuple, list[dict]] = {}
  for r in results:
    if r["kind"] in ("sac", "peer"):
      groups.setdefault(_case_key(r), []).append(r)
  rows = []
  for rs in groups.values():
    per = [r["sps_per_member"] for r in rs]
    rows.append(dict(rs[0], sps_per_member=statistics.median(per),
                     sps_aggregate=statistics.median(r["sps_aggregate"] for r in rs),
                     sps_min=min(per), sps_max=max(per), n=len(rs),
                     peak_rss_gb=max(r["peak_rss_gb"] for r in rs)))
  return rows


def round_ratios(results: list[dict], case: dict) -> list[float]:
  """Per round, the case's per-member SPS over the peer's in the same round."""
  peers = {r.get("round", 0): r for r in results if r["kind"] == "peer"}
  return [r["sps_per_member"] / peers[r.get("round", 0)]["sps_per_member"]
          for r in results if r["kind"] == "sac" and _case_key(r) == _case_key(case)
          and r.get("round", 0) in peers]


def format_table(results: list[dict], peak: float) -> str:
  lines = []
  upd = [r for r in results if r["kind"] == "update"]
  if upd:
    lines += ["Update alone (median; per gradient step):",
              f"{'config':<11} {'M':>3} {'us/step/member':>15} {'MFLOP/step':>11} "
              f"{'GFLOP/s':>8} {'% peak':>7}"]
    for r in upd:
      lines.append(f"{r['config']:<11} {r['members']:>3} {r['us_per_step_per_member']:>15.1f}"
                   f" {r['mflop_per_step_per_member']:>11.1f} {r['gflops']:>8.1f}"
                   f" {100 * r['gflops'] / peak:>6.1f}%")
  e2e = median_cases(results)
  peer = next((r for r in e2e if r["kind"] == "peer"), None)
  if e2e:
    rounds = max(r["n"] for r in e2e)
    lines += ["", "End to end, learning phase (env steps per second; bound: the update "
              "alone at the same M" + (f"; median of {rounds} rounds, range in brackets"
                                       if rounds > 1 else "") + "):",
              f"{'implementation':<32} {'config':<11} {'M':>3} {'SPS total':>10} "
              f"{'SPS/member':>11} {'range':>15} {'x peer':>7} {'% bound':>8} "
              f"{'peak RSS GB':>12}"]
    for r in e2e:
      name = case_label(r)
      ratio = (f"{r['sps_per_member'] / peer['sps_per_member']:.2f}"
               if peer and r["config"] == "equal_work" else "")
      b = update_bound(results, r["config"], r["members"]) if r["kind"] == "sac" else None
      bound = f"{100 * r['sps_per_member'] / b:.0f}%" if b else ""
      rng = f"[{r['sps_min']:.1f}-{r['sps_max']:.1f}]" if r["n"] > 1 else ""
      lines.append(f"{name:<32} {r['config']:<11} {r['members']:>3} "
                   f"{r['sps_aggregate']:>10.1f} {r['sps_per_member']:>11.1f} {rng:>15} "
                   f"{ratio:>7} {bound:>8} {r['peak_rss_gb']:>12.2f}")
  race = [r for r in e2e if r["kind"] == "sac" and r["config"] == "equal_work"
          and r["members"] == 1]
  if peer and race:
    lines.append("")
    for r in race:
      b, f = update_bound(results, "equal_work", 1), flop_bound(results, "equal_work", peak)
      over = "" if r["n"] == 1 else f", median of {r['n']} rounds"
      task = f"{r['env_id']}, " if r.get("env_id") else ""
      line = (f"race ({task}M = 1, equal work{over}): {case_label(r)}"
              f" {r['sps_per_member']:.1f} SPS"
              f" = {r['sps_per_member'] / peer['sps_per_member']:.2f} x "
              f"{peer['impl']} ({peer['sps_per_member']:.1f} SPS)")
      per_round = round_ratios(results, r)
      if len(per_round) > 1:
        line += "; per round " + ", ".join(f"{x:.2f}" for x in per_round)
      if b:
        line += f"; {100 * r['sps_per_member'] / b:.0f}% of the update-alone bound {b:.0f} SPS"
      if f:
        line += f"; {100 * r['sps_per_member'] / f:.0f}% of the fp32-peak bound {f:.0f} SPS"
      lines.append(line)
  prof = [r for r in results if r["kind"] == "profile"]
  if prof:
    parts = ("loop_us", "update_us", "call_overhead_us", "transfer_us", "env_us",
             "host_rest_us")
    lines += ["", "One env step of one member, learning phase (microseconds; loop = update "
              "+ call overhead + transfers + env + host rest):",
              f"{'config':<11} " + " ".join(f"{p[:-3]:>14}" for p in parts)]
    for r in prof:
      lines.append(f"{r['config']:<11} " + " ".join(f"{r[p]:>14.0f}" for p in parts))
  for r in (r for r in results if r["kind"] == "op_profile"):
    lines += ["", f"The fused call by kind of operation ({r['config']}, M = {r['members']}: "
              f"{r['call_us']:.0f} us per call untraced, {r['traced_call_us']:.0f} traced; "
              f"{r['ops_per_call']:.0f} operations per call, {r['op_us_per_call']:.0f} us "
              "of their self time, summed over threads):",
              f"{'kind':<40} {'us/call':>9} {'share':>7} {'ops/call':>9}"]
    total = r["op_us_per_call"] or 1.0
    for o in r["ops"]:
      lines.append(f"{o['op'][:40]:<40} {o['us_per_call']:>9.1f} "
                   f"{100 * o['us_per_call'] / total:>6.1f}% {o['per_call']:>9.1f}")
    lines.append(f"{'matmuls (every kind)':<40} {r['matmul_share'] * total:>9.1f} "
                 f"{100 * r['matmul_share']:>6.1f}%")
    lines.append("runtime, self time per call: " + "; ".join(
        f"{e['event']} {e['us_per_call']:.0f} us" for e in r["runtime"]))
  rep = [r for r in results if r["kind"] == "reporting"]
  if rep:
    lines += ["", "Share of learning-phase wall time (paper config, M = 1, run directory):",
              f"{'protocol':<40} {'train':>7} {'eval':>7} {'run dir':>8} {'seconds':>8}"]
    for r in rep:
      lines.append(f"{r.get('protocol', ''):<40} {100 * r['train_share']:>6.1f}%"
                   f" {100 * r['eval_share']:>6.1f}% {100 * r['report_share']:>7.1f}%"
                   f" {r['seconds']:>8.1f}")
  return "\n".join(lines)


def main(argv):
  del argv
  if FLAGS.case:
    spec = json.loads(FLAGS.case)
    if spec["kind"] == "peer":
      result = run_peer_case(spec["env_id"], spec["warmup"], spec["measure"])
    elif spec["kind"] == "profile":
      result = run_profile_case(spec["config"], spec["env_id"], spec["warmup"],
                                spec["measure"])
    elif spec["kind"] == "op_profile":
      result = run_op_profile_case(spec["config"], spec["members"])
    elif spec["kind"] == "reporting":
      result = run_reporting_case(spec["config"], spec["env_id"], spec["warmup"],
                                  spec["measure"], spec["eval_every"],
                                  spec["eval_episodes"])
    else:
      result = run_sac_case(spec["config"], spec["members"], spec["env_id"],
                            spec["warmup"], spec["measure"], spec.get("overlap", False),
                            spec.get("async_envs", False))
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    return

  for name in FLAGS.configs:
    if name not in CONFIGS:
      raise cli.UsageError(f"--configs: {name!r} is not one of {sorted(CONFIGS)}")
  longest = max(every for every, _ in PROTOCOLS.values())
  if FLAGS.reporting and FLAGS.reporting_steps < 2 * longest:
    raise cli.UsageError(f"--reporting_steps={FLAGS.reporting_steps}: must be >= "
                         f"{2 * longest} (two evaluations of every protocol)")
  loops = list(dict.fromkeys(FLAGS.loops))
  if not loops or set(loops) - {"sync", "overlap"}:
    raise cli.UsageError(f"--loops={','.join(FLAGS.loops)}: must be sync, overlap or both")
  if FLAGS.rounds < 1:
    raise cli.UsageError(f"--rounds={FLAGS.rounds}: must be >= 1")
  update_members = [int(m) for m in FLAGS.update_members]
  members = [int(m) for m in FLAGS.members]
  warmup, measure, repeats = FLAGS.warmup_steps, FLAGS.measure_steps, FLAGS.update_repeats
  if FLAGS.quick:  # its smaller defaults; a flag given explicitly still wins
    given = lambda name: FLAGS[name].present
    update_members = update_members if given("update_members") else [1, 4]
    members = members if given("members") else [1]
    warmup = warmup if given("warmup_steps") else 1000
    measure = measure if given("measure_steps") else 1000
    repeats = repeats if given("update_repeats") else 3
  peak = FLAGS.peak_gflops or cpu_peak_gflops()
  device = device_description()

  class Results(list):
    """The results so far, written to --out after every case: a benchmark stopped part
    way (a time limit, a kill) keeps the cases it finished."""

    def append(self, r: dict) -> None:
      super().append(r)
      self.save()

    def save(self) -> None:
      out = dict(device=device, peak_gflops=peak, env_id=FLAGS.env_id,
                 warmup_steps=warmup, measure_steps=measure, quick=FLAGS.quick,
                 loops=loops, rounds=FLAGS.rounds, async_envs=FLAGS.async_envs,
                 results=list(self), time=time.strftime("%Y-%m-%dT%H:%M:%S"))
      tmp = FLAGS.out + ".tmp"
      with open(tmp, "w") as f:
        json.dump(out, f, indent=2)
      os.replace(tmp, FLAGS.out)

  results = Results()
  print(f"device: {device}; fp32 peak used for %: {peak:.0f} GFLOP/s", flush=True)

  if FLAGS.update_only:
    for name in FLAGS.configs:
      for m in update_members:
        r = bench_update(name, m, steps=FLAGS.update_steps, repeats=repeats)
        print(f"  update {name} M={m}: {r['us_per_step_per_member']:.1f} us/step/member,"
              f" {r['gflops']:.1f} GFLOP/s", flush=True)
        results.append(r)

  if FLAGS.end_to_end:
    base = dict(env_id=FLAGS.env_id, warmup=warmup, measure=measure)
    peer = FLAGS.peer and peer_available()
    if FLAGS.peer and not peer:
      print("  peer skipped: stable-baselines-jax is not installed "
            "(pip install -e '.[bench]' -c experiments/bench-constraints.txt)")
    for rnd in range(FLAGS.rounds):
      if peer:
        r = dict(_subprocess_case(dict(base, kind="peer")), round=rnd)
        print(f"  round {rnd}: peer {r['sps_per_member']:.1f} SPS", flush=True)
        results.append(r)
      for name in FLAGS.configs:
        for m in members:
          for lp in loops:
            r = dict(_subprocess_case(dict(base, kind="sac", config=name, members=m,
                                           overlap=lp == "overlap",
                                           async_envs=FLAGS.async_envs)), round=rnd)
            print(f"  round {rnd}: {case_label(r)} {name} M={m}: "
                  f"{r['sps_aggregate']:.1f} SPS total", flush=True)
            results.append(r)

  if FLAGS.profile:
    for name in FLAGS.configs:
      r = _subprocess_case(dict(kind="profile", config=name, env_id=FLAGS.env_id,
                                warmup=warmup, measure=min(measure, 2000)))
      print(f"  profile {name}: " + ", ".join(f"{k} {v:.0f}" for k, v in r.items()
                                              if k.endswith("_us")), flush=True)
      results.append(r)

  if FLAGS.op_profile:
    for name in FLAGS.configs:
      r = _subprocess_case(dict(kind="op_profile", config=name,
                                members=update_members[0]))
      print(f"  op profile {name} M={r['members']}: {r['call_us']:.0f} us per call, "
            f"{r['ops_per_call']:.0f} operations, matmuls {100 * r['matmul_share']:.0f}% "
            "of their traced time", flush=True)
      results.append(r)

  if FLAGS.reporting:
    for label, (every, episodes) in PROTOCOLS.items():
      r = _subprocess_case(dict(kind="reporting", config="paper", env_id=FLAGS.env_id,
                                warmup=warmup, measure=FLAGS.reporting_steps,
                                eval_every=every, eval_episodes=episodes))
      r["protocol"] = label
      print(f"  reporting {label}: evaluation {100 * r['eval_share']:.1f}%, run directory"
            f" {100 * r['report_share']:.1f}% of wall time", flush=True)
      results.append(r)

  table = format_table(results, peak)
  print("\n" + table)
  results.save()
  print(f"\nwrote {FLAGS.out}")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
