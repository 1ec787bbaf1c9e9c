"""experiments.reproduce: the smoke budget of every claim end to end (real experiments.run
processes, tiny networks, 300 env steps), its outputs, resume, and bad input."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import reproduce

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _reproduce(tmp_path, *args):
  return subprocess.run([sys.executable, "-m", "experiments.reproduce", "--budget=smoke",
                         f"--runs_dir={tmp_path}/runs", f"--out={tmp_path}/out", *args],
                        cwd=REPO, capture_output=True, text=True)


@pytest.mark.parametrize("claim, extra, arms", [
    ("hard", (), 2), ("grad_steps", (), 3), ("components", (), 4),
    ("tasks", ("--tasks=hopper",), 2)])
def test_smoke_budget_of_every_claim(tmp_path, claim, extra, arms):
  res = _reproduce(tmp_path, f"--claim={claim}", *extra)
  assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
  out = tmp_path / "out"
  result = json.loads((out / "verdict.json").read_text(),
                      parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
  assert result["claim"] == claim and result["budget"] == "smoke"
  assert result["verdict"] in ("holds", "does not hold", "inconclusive at this budget")
  assert len(result["arms"]) == arms and result["parts"]
  assert all(len(a["final"]) == 2 and a["env_steps"] == 300 for a in result["arms"].values())
  assert len(result["commands"]) >= 1 and all("experiments.run" in c
                                              for c in result["commands"])
  rows = list(csv.DictReader(open(out / "returns.csv")))
  assert len(rows) == 2 * arms
  # curves.csv holds every evaluation (3 per seed) and agrees with the runs' metrics.csv.
  curves = list(csv.DictReader(open(out / "curves.csv")))
  assert len(curves) == 3 * 2 * arms
  assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "smoke budget" in (out / "table.md").read_text()
  if claim == "hard":
    # Rerunning the same command finds the run complete and recomputes the same verdict.
    again = _reproduce(tmp_path, f"--claim={claim}", *extra)
    assert again.returncode == 0 and "is complete" in again.stdout, again.stdout[-2000:]
    assert json.loads((out / "verdict.json").read_text())["arms"] == result["arms"]


def test_arm_statistics_follow_the_metrics(tmp_path):
  """analyze() reads final = mean of the last 3 evaluations per seed, max = best."""
  steps = np.arange(1, 6) * 5000
  curves = {100: np.array([0., 1, 2, 3, 4]), 101: np.array([10., 20, 30, 40, 50])}
  arms = [reproduce.Arm("G=1", "G1"), reproduce.Arm("G=4", "G4"), reproduce.Arm("G=16",
                                                                                  "G16")]
  data = {a.label: (steps, {s: c + 100 * i for s, c in curves.items()})
          for i, a in enumerate(arms)}
  r = reproduce.analyze("grad_steps", arms, data, "cpu")
  assert r["arms"]["G=1"]["final"] == [3.0, 40.0]
  assert r["arms"]["G=16"]["max"] == [204.0, 250.0]
  assert [p["part"] for p in r["parts"]] == ["G=4 final > G=1 final",
                                             "G=16 final > G=4 final"]


def test_bad_input_is_one_clear_line(tmp_path):
  res = _reproduce(tmp_path, "--claim=nope")
  assert res.returncode != 0 and "tasks, hard, grad_steps, components" in res.stderr
  res = _reproduce(tmp_path, "--claim=hard", "--seeds=1")
  assert res.returncode != 0 and "--seeds=1" in res.stderr
  res = _reproduce(tmp_path, "--claim=hard", "--arms=bogus")
  assert res.returncode != 0 and "bogus" in res.stderr
