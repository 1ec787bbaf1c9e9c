"""experiments.run_stats: the table's statistics from a hand-made metrics.csv whose answers
are known, the zero-action comparison, the windowed medians of a column, and bad input."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from experiments import run_stats
from experiments import verdict as V

COLUMNS = ["env_step", "member", "seed", "eval_return", "setting", "train_log_pi"]
# setting -> member -> (seed, returns at 1k..4k, log pi at each row)
RUNS = {
    "reward_scale=1": {0: (7, [100.0, 150.0, 200.0, 250.0], [1.0, 2.0, 3.0, 4.0]),
                       1: (8, [50.0, 60.0, 70.0, 80.0], [5.0, 6.0, 7.0, 8.0])},
    "reward_scale=3": {2: (7, [300.0, 400.0, 500.0, 600.0], [-1.0, -2.0, -3.0, 40.0]),
                       3: (8, [310.0, 410.0, 510.0, 610.0], [0.0, 0.0, 0.0, 0.0])},
}


def _write_run(tmp_path, env_id="Hopper-v5"):
  d = tmp_path / "run"
  d.mkdir()
  with open(d / "metrics.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(COLUMNS)
    for t in reversed(range(4)):  # newest first: no statistic may rest on the row order
      for setting, members in RUNS.items():
        for m, (seed, returns, log_pi) in members.items():
          w.writerow([1000 * (t + 1), m, seed, returns[t], setting, log_pi[t]])
  (d / "summary.json").write_text(json.dumps({"env_id": env_id}))
  return str(d)


def test_statistics_are_the_known_ones(tmp_path):
  stats = {s["setting"]: s for s in run_stats.run_stats(_write_run(tmp_path))}
  low, high = stats["reward_scale=1"], stats["reward_scale=3"]
  assert low["seeds"] == [7, 8] and low["steps"] == [4000, 4000]
  assert low["final"] == [250.0, 80.0] and low["final_mean"] == 165.0
  # last 3: (150 + 200 + 250) / 3 = 200 and (60 + 70 + 80) / 3 = 70.
  assert low["last3"] == pytest.approx([200.0, 70.0]) and low["last3_mean"] == 135.0
  # With two values the bootstrap means are a, (a + b) / 2, b with probability 1/4, 1/2,
  # 1/4, so the 2.5% and 97.5% percentiles are the two values.
  assert low["last3_ci95"] == pytest.approx((70.0, 200.0))
  assert low["auc_mean"] == pytest.approx((175.0 + 65.0) / 2)
  assert low["best_mean"] == pytest.approx((250.0 + 80.0) / 2)
  assert low["log_pi_median"] == 4.5 and low["log_pi_range"] == [1.0, 8.0]
  # Hopper-v5's zero action scores 129.6: [70, 200] lies across it, [410, 510] above.
  assert low["floor"] == pytest.approx(129.6) and low["against_floor"] == "not apart"
  assert high["last3_mean"] == pytest.approx(505.0) and high["against_floor"] == "above"
  assert high["log_pi_median"] == 0.0 and high["log_pi_range"] == [-3.0, 40.0]


def test_floor_below_and_tasks_without_one(tmp_path):
  assert run_stats.floor_of("experiments.variants:HumanoidNoContactForces-v5") == \
      pytest.approx(197.1)
  assert run_stats.floor_of("InvertedPendulum-v5") is None
  a = tmp_path / "a"
  a.mkdir()
  stats = run_stats.run_stats(_write_run(a, env_id="Ant-v5"))  # floor 994
  assert {s["against_floor"] for s in stats} == {"below"}
  b = tmp_path / "b"
  b.mkdir()
  stats = run_stats.run_stats(_write_run(b, env_id="InvertedPendulum-v5"))
  assert {s["against_floor"] for s in stats} == {None}


def test_command_prints_one_row_per_setting_and_refuses_a_non_run(tmp_path):
  d = _write_run(tmp_path)
  r = subprocess.run([sys.executable, "-m", "experiments.run_stats", d],
                     capture_output=True, text=True, check=True)
  lines = r.stdout.strip().splitlines()
  assert lines[0] == run_stats.HEADER and len(lines) == 4
  assert lines[2].startswith("| run | reward_scale=1 | 7, 8 | 165 (250, 80) | 135 [70, 200] |")
  assert lines[2].endswith("| 4 (1 to 8) | not apart (130) |")
  bad = subprocess.run([sys.executable, "-m", "experiments.run_stats", str(tmp_path / "no")],
                       capture_output=True, text=True)
  assert bad.returncode == 2 and bad.stdout == "" and "not a run directory" in bad.stderr


def test_bootstrap_interval_is_the_exact_resampling_distributions_percentiles():
  """For 5 values the bootstrap distribution of the mean is exactly enumerable (5^5 equally
  likely resamples): its 2.5% and 97.5% percentiles are 8 and 68 here; the 10,000-resample
  estimate lies within 3 of them (the 5%/95% pair, 10 and 62, would not)."""
  import itertools
  x = [0.0, 10.0, 20.0, 30.0, 100.0]
  exact = np.percentile([np.mean(c) for c in itertools.product(x, repeat=5)], [2.5, 97.5])
  np.testing.assert_allclose(exact, [8.0, 68.0])
  np.testing.assert_allclose(V.mean_ci95(x), exact, atol=3.0)


def _write_windows(tmp_path):
  """Members 0 (seed 7) and 1 (seed 9), rows out of order; train_x per member:
  member 0 at 0, 40, 50, 90 (window 0 of 100: 1, 2, 10, 3: median 2.5, not the mean 4),
  at 100 (the next window's start: 20) and 150 (30), empty at 200, 7 at 310;
  member 1 at 50 (5) and 250 (empty). Windows 0, 100 and 300 only: no value lies in
  window 200, so it has no column; member 1 has none in 100 or 300 (empty cells)."""
  d = tmp_path / "w"
  d.mkdir()
  rows = [(150, 0, 7, 30.0), (0, 0, 7, 1.0), (40, 0, 7, 2.0), (50, 1, 9, 5.0),
          (90, 0, 7, 3.0), (50, 0, 7, 10.0), (100, 0, 7, 20.0), (200, 0, 7, ""),
          (310, 0, 7, 7.0), (250, 1, 9, "")]
  with open(d / "metrics.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["env_step", "member", "seed", "eval_return", "train_x"])
    for step, m, seed, x in rows:
      w.writerow([step, m, seed, "", x])
  return str(d)


def test_windowed_medians_are_the_known_ones(tmp_path):
  import csv as csv_lib
  d = _write_windows(tmp_path)
  with open(f"{d}/metrics.csv", newline="") as f:
    rows = list(csv_lib.DictReader(f))
  starts, members = run_stats.windowed_medians(rows, "train_x", 100)
  assert starts == [0, 100, 300]
  assert members == [("", 0, 7, {0: 2.5, 100: 25.0, 300: 7.0}), ("", 1, 9, {0: 5.0})]


def test_window_command_prints_a_table_per_column_and_refuses_bad_options(tmp_path):
  d = _write_windows(tmp_path)
  cmd = [sys.executable, "-m", "experiments.run_stats", d]
  r = subprocess.run(cmd + ["--by_window=100", "--metrics=train_x,seed"],
                     capture_output=True, text=True, check=True)
  lines = r.stdout.splitlines()
  assert lines[0] == "w: train_x, median per 100 env steps (window start)"
  assert lines[2] == "| member (seed) | 0 | 100 | 300 |"
  assert lines[4:6] == ["| 0 (7) | 2.50 | 25.0 | 7.00 |", "| 1 (9) | 5.00 |  |  |"]
  assert lines[6] == "" and lines[7].startswith("w: seed, median per 100")
  assert run_stats._steps(1_100_000) == "1.1M" and run_stats._steps(900_000) == "900k"
  assert run_stats._number(6.6e6) == "6.60e+06" and run_stats._number(-1505.2) == "-1,505"
  assert run_stats._number(0.00115) == "0.00115" and run_stats._number(0) == "0"
  for bad, says in [(["--by_window=100"], "go together"),
                    (["--by_window=0", "--metrics=train_x"], "--by_window='0'"),
                    (["--by_window=1e5", "--metrics=train_x"], "--by_window='1e5'"),
                    (["--by_window=100", "--metrics=train_y"], "has no column train_y"),
                    (["--by_window=100", "--metrics="], "names no column"),
                    (["--windows=100"], "unknown argument '--windows=100'")]:
    out = subprocess.run(cmd + bad, capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == "", bad
    assert out.stderr.startswith("error: ") and says in out.stderr, (bad, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def _write_drops(tmp_path):
  """Evaluations at 1k..8k (FROM = 4k, BY = 7k) of four members, rows out of order:
  member 0 (seed 3): 90, 100, 110, 100 | 60, 30, 30 | 0: level 103.33 (the last 3 up to
  4k: 100, 110, 100), running means after 4k: 90 (5k), 63.3 (6k), 40 (7k): below half
  (51.67) first at 7k, not at 6k's single 30; the 0 at 8k is past BY.
  member 1 (seed 4): 100 x 4 | 10, 100, 100 | -: one bad evaluation, running means 70,
  70, 70: never below 50: held. Its 8k row is empty (frozen): skipped.
  member 2 (seed 5): -5 x 4 | ...: level <= 0, not judged.
  member 3 (seed 6): no evaluation up to 4k (all empty): not judged."""
  d = tmp_path / "d"
  d.mkdir()
  returns = {0: [90, 100, 110, 100, 60, 30, 30, 0], 1: [100, 100, 100, 100, 10, 100, 100, ""],
             2: [-5, -5, -5, -5, -50, -50, -50, -50], 3: ["", "", "", "", "", 1, 1, 1]}
  with open(d / "metrics.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["env_step", "member", "seed", "eval_return"])
    for k in reversed(range(8)):
      for m, xs in returns.items():
        w.writerow([1000 * (k + 1), m, 3 + m, xs[k]])
  return str(d)


def test_drops_are_the_known_ones(tmp_path):
  with open(f"{_write_drops(tmp_path)}/metrics.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  got = run_stats.drops(rows, 4000, 7000, 0.5)
  assert [(d["member"], d["seed"], d["judged"], d["fell_at"]) for d in got] == [
      (0, 3, True, 7000), (1, 4, True, None), (2, 5, False, None), (3, 6, False, None)]
  assert got[0]["level"] == pytest.approx(310 / 3)
  assert (got[0]["lowest"], got[0]["lowest_at"]) == (pytest.approx(40.0), 7000)
  assert (got[1]["lowest"], got[1]["lowest_at"]) == (pytest.approx(70.0), 5000)
  assert got[1]["level"] == 100.0 and got[2]["level"] == -5.0 and got[3]["level"] is None
  # A stricter fraction (0.8): member 0's 63.3 at 6k is the first below 82.7; member 1's
  # 70 is below 80 from 5k on.
  assert [d["fell_at"] for d in run_stats.drops(rows, 4000, 7000, 0.8)][:2] == [6000, 5000]


def test_drop_command_prints_the_table_and_count_and_refuses_bad_options(tmp_path):
  d = _write_drops(tmp_path)
  cmd = [sys.executable, "-m", "experiments.run_stats", d]
  r = subprocess.run(cmd + ["--drop=4000,7000"], capture_output=True, text=True, check=True)
  lines = r.stdout.splitlines()
  assert lines[2] == "| member (seed) | level at 4k | lowest (at) | fell below 0.5 x level at |"
  assert lines[4:8] == ["| 0 (3) | 103 | 40.0 (7k) | 7k |", "| 1 (4) | 100 | 70.0 (5k) | no |",
                        "| 2 (5) | -5.00 | -50.0 (7k) | not judged (level <= 0 or no "
                        "evaluation) |",
                        "| 3 (6) | none | 1.00 (6k) | not judged (level <= 0 or no "
                        "evaluation) |"]
  assert lines[9] == "1 of 2 judged members fell below 0.5 x their level at 4k by 7k"
  r = subprocess.run(cmd + ["--drop=4000,9000"], capture_output=True, text=True, check=True)
  assert "(the run's evaluations reach 8k only)" in r.stdout
  for bad, says in [(["--drop=7000,4000"], "--drop='7000,4000': two env steps FROM,BY"),
                    (["--drop=4000"], "--drop='4000'"),
                    (["--drop=4000,7000", "--fraction=1.5"], "--fraction='1.5'"),
                    (["--drop=4000,7000", "--fraction=x"], "--fraction='x'"),
                    (["--fraction=0.5"], "goes alone"),
                    (["--drop=4000,7000", "--by_window=100"], "goes alone")]:
    out = subprocess.run(cmd + bad, capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == "", bad
    assert out.stderr.startswith("error: ") and says in out.stderr, (bad, out.stderr)
