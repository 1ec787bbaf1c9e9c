"""experiments/bench.py's arithmetic and its reporting case (speed itself is never asserted
in tests: it is measured by the benchmark, as ratios against a peer in one run)."""

import pytest

from experiments import bench


def _update(config, m, us, mflop=500.0):
  return dict(kind="update", config=config, members=m, us_per_step_per_member=us,
              mflop_per_step_per_member=mflop, gflops=mflop * 1e-3 / (us * 1e-6))


def test_bounds_and_the_race_line():
  results = [_update("equal_work", 1, 5000.0), _update("equal_work", 4, 4000.0),
             dict(kind="peer", config="equal_work", members=1, impl="peer 1.0",
                  sps_per_member=100.0, sps_aggregate=100.0, peak_rss_gb=1.0),
             dict(kind="sac", config="equal_work", members=1, overlap=False,
                  env_id="Hopper-v5", sps_per_member=170.0, sps_aggregate=170.0, peak_rss_gb=1.0),
             dict(kind="sac", config="equal_work", members=4, overlap=False,
                  sps_per_member=50.0, sps_aggregate=200.0, peak_rss_gb=1.0)]
  # One env step of M members costs M gradient steps at the update-alone time.
  assert bench.update_bound(results, "equal_work", 1) == pytest.approx(200.0)
  assert bench.update_bound(results, "equal_work", 4) == pytest.approx(62.5)
  assert bench.update_bound(results, "paper", 1) is None
  # 500 MFLOP per step at 100 GFLOP/s: 200 steps per second.
  assert bench.flop_bound(results, "equal_work", 100.0) == pytest.approx(200.0)
  table = bench.format_table(results, peak=100.0)
  assert "85%" in table and "80%" in table  # 170 / 200, 50 / 62.5
  race = next(l for l in table.splitlines() if l.startswith("race"))
  assert race.startswith("race (Hopper-v5, M = 1, equal work): ")  # the task measured
  assert "170.0 SPS = 1.70 x peer 1.0 (100.0 SPS)" in race
  assert "85% of the update-alone bound 200 SPS" in race
  assert "85% of the fp32-peak bound 200 SPS" in race


def test_rounds_give_medians_and_per_round_ratios():
  """Three rounds: each case's row is its median over rounds with its range, and the race
  is the ratio of the medians, with each round's own ratio beside it."""
  def e2e(kind, sps, rnd, overlap=False):
    return dict(kind=kind, config="equal_work", members=1, overlap=overlap, round=rnd,
                env_id="HalfCheetah-v5",
                sps_per_member=sps, sps_aggregate=sps, peak_rss_gb=1.0 + rnd,
                **({"impl": "peer 1.0"} if kind == "peer" else {}))
  results = [_update("equal_work", 1, 5000.0),
             e2e("peer", 100.0, 0), e2e("sac", 130.0, 0), e2e("sac", 90.0, 0, True),
             e2e("peer", 80.0, 1), e2e("sac", 120.0, 1), e2e("sac", 95.0, 1, True),
             e2e("peer", 120.0, 2), e2e("sac", 180.0, 2), e2e("sac", 85.0, 2, True)]
  rows = bench.median_cases(results)
  assert [(r["kind"], r["overlap"]) for r in rows] == [("peer", False), ("sac", False),
                                                       ("sac", True)]
  peer, sync, over = rows
  assert (peer["sps_per_member"], peer["sps_min"], peer["sps_max"], peer["n"]) == (
      100.0, 80.0, 120.0, 3)
  assert (sync["sps_per_member"], over["sps_per_member"]) == (130.0, 90.0)
  assert sync["peak_rss_gb"] == 3.0
  assert bench.round_ratios(results, sync) == pytest.approx([1.3, 1.5, 1.5])
  table = bench.format_table(results, peak=100.0)
  race = [l for l in table.splitlines() if l.startswith("race")]
  assert race[0].startswith("race (HalfCheetah-v5, M = 1, equal work, median of 3 rounds): "
                            "sac_jax 130.0 SPS = 1.30 x peer 1.0 (100.0 SPS); "
                            "per round 1.30, 1.50, 1.50; 65% of the update-alone bound")
  assert "sac_jax (overlap) 90.0 SPS = 0.90 x" in race[1]
  assert "[120.0-180.0]" in table


def test_reporting_case_accounts_for_the_wall_time():
  """Training, evaluation and the run directory's share add up to the learning phase's
  wall time, and ten episodes per evaluation cost more evaluation time than one."""
  one = bench.run_reporting_case("paper", "Pendulum-v1", 200, 400, 100, 1)
  ten = bench.run_reporting_case("paper", "Pendulum-v1", 200, 400, 100, 10)
  for r in (one, ten):
    assert r["evaluations"] == 4
    assert r["train_share"] + r["eval_share"] + r["report_share"] == pytest.approx(1.0)
    assert 0 < r["train_share"] < 1 and r["eval_share"] > 0 and r["report_share"] > 0
    assert 0 <= r["after_step_share"] < r["train_share"]
  assert ten["eval_share"] > one["eval_share"]


def test_async_envs_cases_are_their_own_rows():
  """--async_envs labels its cases, and a sync case and an async one of the same M are two
  rows (never one median over both)."""
  def sac(sps, async_envs, overlap=False):
    return dict(kind="sac", config="paper", members=16, overlap=overlap,
                async_envs=async_envs, sps_per_member=sps, sps_aggregate=16 * sps,
                peak_rss_gb=1.0)
  results = [sac(10.0, False), sac(30.0, True), sac(50.0, True, True)]
  rows = bench.median_cases(results)
  assert [bench.case_label(r) for r in rows] == [
      "sac_jax", "sac_jax (async envs)", "sac_jax (overlap) (async envs)"]
  assert [r["sps_per_member"] for r in rows] == [10.0, 30.0, 50.0]
  table = bench.format_table(results, peak=100.0)
  assert "sac_jax (overlap) (async envs)" in table and "800.0" in table
  assert bench.case_label(dict(kind="peer", impl="peer 1.0")) == "peer 1.0"


def test_profile_case_splits_the_env_step():
  """The `--profile` case runs on the real task and reports every part (their sizes are the
  benchmark's to measure, not the test's)."""
  r = bench.run_profile_case("paper", "HalfCheetah-v5", warmup=150, measure=60)
  parts = ("loop_us", "call_us", "device_inputs_call_us", "update_us", "env_us",
           "dispatch_floor_us", "no_update_call_us", "update_one_call_us")
  for k in parts:
    assert r[k] > 0 and r[k] < 1e7, (k, r[k])
  assert r["transfer_us"] == pytest.approx(r["call_us"] - r["device_inputs_call_us"])
  assert r["host_rest_us"] == pytest.approx(r["loop_us"] - r["call_us"] - r["env_us"])


def test_op_kind_drops_the_instruction_number():
  assert bench.op_kind("broadcast_select_fusion.2") == "broadcast_select_fusion"
  assert bench.op_kind("copy.224") == bench.op_kind("copy") == "copy"
  assert bench.op_kind("wrapped_reduce-window.24") == "wrapped_reduce-window"
  assert bench.op_kind("region_10.30.clone.1") == "region_10.30.clone"  # only the tail
  assert bench.op_kind("loop_multiply_fusion_3") == "loop_multiply_fusion"  # a GPU kernel
  assert bench.op_kind("$profiler.py:271 stop_trace") == "(python)"


def test_self_times_subtract_the_nested_events():
  """A hand-made trace: an executor (0-100 us) holding a loop (10-60) that holds two ops
  (10-30, 40-50), then an op (70-90); another thread's op overlaps in time but is not
  nested. Self times: executor 100 - 50 - 20 = 30, loop 50 - 20 - 10 = 20."""
  ev = lambda name, ts, dur, tid=1: dict(ph="X", name=name, ts=ts, dur=dur, pid=1, tid=tid)
  events = [ev("executor", 0, 100), ev("while.1", 10, 50), ev("dot.1", 10, 20),
            ev("copy.1", 40, 10), ev("dot.2", 70, 20), ev("copy.2", 5, 90, tid=2),
            dict(ph="i", name="instant", ts=3, pid=1, tid=1)]
  got = sorted(bench.self_times(events))
  assert got == sorted([("executor", 30.0), ("while.1", 20.0), ("dot.1", 20.0),
                        ("copy.1", 10.0), ("dot.2", 20.0), ("copy.2", 90.0)])
  # A thread's self times add up to its busy time.
  assert sum(t for n, t in got if n != "copy.2") == 100.0


def test_op_profile_case_names_the_compiled_programs_operations():
  """The `--op_profile` case on a tiny paper configuration: every reported kind is an
  operation of the compiled step (the runtime's events are apart), the matmuls are among
  them, and the shares add up (sizes are the benchmark's to measure, not the test's)."""
  r = bench.run_op_profile_case("paper", 2, calls=5, obs_dim=3, act_dim=1, top=100,
                                hidden_sizes=(8, 8), batch_size=8)
  kinds = {o["op"] for o in r["ops"]}
  assert any(k in kinds for k in ("dot", "ynn_fusion")), kinds
  assert not any(k.startswith(("ThunkExecutor", "PjitFunction", "(python)")) for k in kinds)
  assert r["runtime"] and r["ops_per_call"] >= 10 and r["call_us"] > 0
  assert sum(o["us_per_call"] for o in r["ops"]) == pytest.approx(r["op_us_per_call"])
  assert 0 < r["matmul_share"] < 1
  assert sum(o["per_call"] for o in r["ops"]) == pytest.approx(r["ops_per_call"])
