"""experiments.references: the zero action's return per task, measured again against the
stored table, and drawn and named in the reproduction's outputs."""

import json

import numpy as np
import pytest

from experiments import claim_analysis
from experiments import claim_report
from experiments import claims
from experiments import references
from experiments import reproduce


@pytest.mark.parametrize("task", sorted(references.ENV_IDS))
def test_the_stored_zero_action_returns_are_what_the_envs_give(task):
  """10 zero-action episodes per task (about 20 s of CPU for all six): a gymnasium or
  MuJoCo that scores them differently fails here, not silently in a figure."""
  mean, sd, length = references.measure(task)
  want = references.ZERO_ACTION[task]
  np.testing.assert_allclose((mean, sd, length), want, atol=0.051,
                             err_msg=f"{task}: measured vs stored (mean, sd, length)")


def test_the_reference_envs_are_the_task_flagfiles_envs():
  assert set(claims.TASKS) <= set(references.ENV_IDS)
  for task in references.ENV_IDS:
    assert references.ENV_IDS[task] == reproduce._task_flag(task, "env_id"), task


def test_the_measure_is_per_episode_and_refuses_bad_input():
  # One episode: Hopper doing nothing falls (terminated) before the time limit.
  mean, sd, length = references.measure("hopper", episodes=1, first_seed=5)
  assert 0 < length < 1000 and sd == 0.0 and mean > 0
  with pytest.raises(ValueError, match=r"task 'swimmer': must be one of"):
    references.measure("swimmer")
  with pytest.raises(ValueError, match=r"episodes=0: must be at least 1"):
    references.measure("ant", episodes=0)


def _synthetic(claim, tasks):
  arms = claims.plan(claim, tasks)
  steps = np.arange(1, 6) * 5000
  curves = {100 + i: np.linspace(0, 2000, 5) + 10 * i for i in range(5)}
  data = {claims.key(a): (steps, curves) for a in arms}
  return arms, data, claim_analysis.analyze(claim, arms, data, "cpu")


def test_outputs_name_and_draw_the_floor_on_each_task(tmp_path):
  arms, data, result = _synthetic("sac_vs_ddpg", ("hopper", "ant"))
  claim_report.write_outputs(str(tmp_path), "sac_vs_ddpg", arms, data, result, ["cmd"])
  v = json.loads((tmp_path / "verdict.json").read_text())
  assert sorted(v["zero_action"]) == ["ant", "hopper"]
  assert v["zero_action"]["ant"]["mean"] == references.ZERO_ACTION["ant"][0] == 994.0
  assert v["zero_action"]["ant"]["env_seeds"] == [1000, 1009]
  table = (tmp_path / "table.md").read_text()
  assert "scores Hopper-v5 130 ± 18, Ant-v5 994 ± 4." in table
  result = dict(result, zero_action=v["zero_action"])
  fig = claim_report.figure("sac_vs_ddpg", arms, data, result)
  floors = {}
  for ax in fig.axes:
    lines = [l for l in ax.get_lines() if l.get_label().startswith("zero action")]
    assert len(lines) == 1, ax.get_title()
    floors[ax.get_title()] = float(np.unique(lines[0].get_ydata())[0])
    assert not [l for l in ax.get_lines() if l.get_label().startswith("the bar")]
  assert floors == {"hopper": 129.6, "ant": 994.0}


def test_the_tasks_figure_draws_the_bar_and_a_single_task_claim_its_floor():
  arms, data, result = _synthetic("tasks", ("walker2d",))
  result = dict(result, zero_action=claim_report.zero_action_refs(arms))
  ax, = claim_report.figure("tasks", arms, data, result).axes
  labels = {l.get_label(): float(l.get_ydata()[0]) for l in ax.get_lines()
            if not l.get_label().startswith("_")}
  assert labels["the bar: 1,000"] == 1000.0
  assert labels["zero action (does nothing): 95"] == 94.8
  # hard: one panel, no task name as its title; HalfCheetah's floor (0) is drawn there too.
  arms, data, result = _synthetic("hard", ())
  result = dict(result, zero_action=claim_report.zero_action_refs(arms))
  ax, = claim_report.figure("hard", arms, data, result).axes
  assert [l.get_label() for l in ax.get_lines() if "zero action" in l.get_label()] == [
      "zero action (does nothing): 0"]
