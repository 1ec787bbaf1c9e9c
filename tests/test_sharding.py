"""The member axis sharded over 4 CPU devices (sac_jax.parallel): the state really lives on
four devices, a sharded run equals the unsharded one, and a member count the devices do not
divide is refused.

tests/conftest.py has imported jax already, so the device count cannot change in this
process: the checks run in a subprocess started with
XLA_FLAGS=--xla_force_host_platform_device_count=4 (it inherits the compile cache).
"""

import subprocess
import sys
import textwrap

from cli_util import ROOT, cpu_devices_env

CHECK = textwrap.dedent(r"""
    import dataclasses, os
    import jax, numpy as np
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    from sac_jax import agent, loop, parallel

    devs = jax.devices()
    assert len(devs) == 4, devs
    cfg = agent.SACConfig(num_components=2, hidden_sizes=(16, 16), batch_size=16,
                          buffer_size=1000, start_steps=100)
    hp = agent.HParams.from_config(cfg).stack(4, reward_scale=[0.5, 1.0, 2.0, 4.0])

    # 1. The stacked state and the step's outputs are spread over the four devices, one
    #    member per device (every leaf: params, optimizer states, replay buffers, keys).
    ag = agent.Agent(cfg, 3, 1)
    mesh = parallel.member_mesh(4)
    sharding = parallel.member_sharding(mesh)
    state = parallel.shard_members(ag.init_members(loop.seed_keys([0, 1, 2, 3]), hp), mesh)
    obs = jax.device_put(np.ones((4, 3), np.float32), sharding)
    trans = jax.device_put(agent.empty_transition(4, 3, 1), sharding)
    state, action, _ = ag.make_step()(state, trans, False, obs, False)
    for x in jax.tree.leaves(state) + [action]:
      assert parallel.devices_of(x) == set(devs), (x.shape, x.sharding)
      assert x.sharding.is_equivalent_to(sharding, x.ndim), x.sharding
      assert [s.data.shape[0] for s in x.addressable_shards] == [1, 1, 1, 1], x.shape
    print("SPREAD", len(jax.tree.leaves(state)), "leaves over", len(devs), "devices")

    # 2. The host loop: the same run unsharded (num_devices=1) and sharded (all 4 devices).
    lc = loop.LoopConfig("Pendulum-v1", num_members=4, seed=5, total_env_steps=300,
                         eval_every=150, eval_episodes=1, log_every_s=0, num_devices=1)
    one = loop.train(cfg, lc, hp)
    four = loop.train(cfg, dataclasses.replace(lc, num_devices=0), hp)
    assert [r.env_step for r in one] == [r.env_step for r in four] == [150, 300]
    for a, b in zip(one, four):
      # float32 on the same CPU; the partitioned program may fuse differently, so allow
      # a relative 1e-4 on returns (about 0.1 on Pendulum's -1500) and on train metrics.
      np.testing.assert_allclose(a.returns, b.returns, rtol=1e-4, atol=1e-3)
      for k in a.train_metrics:
        np.testing.assert_allclose(a.train_metrics[k], b.train_metrics[k], rtol=1e-4,
                                   atol=1e-4, err_msg=k)
    print("EQUAL", [r.returns.ravel().round(2).tolist() for r in four])

    # 3. Members that do not split evenly over the devices are refused, naming both.
    try:
      loop.train(cfg, dataclasses.replace(lc, num_members=6, num_devices=0))
    except ValueError as e:
      msg = str(e)
    else:
      raise AssertionError("6 members on 4 devices were not refused")
    assert "6 member(s)" in msg and "4 devices" in msg and "--num_devices=3" in msg, msg
    print("REFUSED", msg)
""")


def test_sharded_run_matches_unsharded_and_spreads_the_state():
  env = cpu_devices_env(4, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "SPREAD" in proc.stdout and "EQUAL" in proc.stdout and "REFUSED" in proc.stdout


def test_cli_refuses_members_not_divisible_by_devices(tmp_path):
  env = cpu_devices_env(4, JAX_PLATFORMS="cpu")
  run_dir = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.run", "--env_id=Pendulum-v1", "--num_seeds=3",
       "--sweep", "alpha=0,1", f"--run_dir={run_dir}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
  line = proc.stderr.strip().splitlines()[-1]
  assert "6 member(s)" in line and "4 devices" in line and "--num_devices=3" in line, line
  assert not run_dir.exists()
