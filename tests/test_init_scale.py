"""experiments.init_scale: the shares it reports, and the finding docs/reproduction.md cites
(a fresh policy starts in the tanh's tails on Humanoid-v5, not with --obs_transform=symlog)."""

import subprocess
import sys

import numpy as np
import pytest

from experiments import init_scale


def test_summarize_counts_tails_and_bounds():
  means = np.array([[0.0, 3.5], [-4.0, 1.0]])           # two of four beyond |3|
  log_stds = np.array([[-4.6, 0.0], [1.6, -4.4]])       # -4.6 and 1.6 within 0.5 of a bound
  rms, tail, bound = init_scale.summarize(means, log_stds, -5.0, 2.0)
  assert rms == pytest.approx(np.sqrt((0 + 12.25 + 16 + 1) / 4))
  assert tail == 0.5 and bound == 0.5


def test_humanoid_starts_in_the_tails_and_with_symlog_observations_does_not():
  raw = init_scale.measure("Humanoid-v5", states=300, inits=2)
  sym = init_scale.measure("Humanoid-v5", states=300, inits=2, obs_transform="symlog")
  assert raw.obs_max > 100.0 and sym.obs_max < 10.0
  assert raw.tail_share > 0.3 and raw.bound_share > 0.3 and raw.mean_rms > 5.0
  assert sym.tail_share < 0.01 and sym.bound_share < 0.01 and sym.mean_rms < 1.5


def test_unknown_task_is_one_line_and_exit_status_2():
  r = subprocess.run([sys.executable, "-m", "experiments.init_scale", "Hoper-v5"],
                     capture_output=True, text=True)
  assert r.returncode == 2 and r.stdout == ""
  assert "Hoper-v5" in r.stderr and "Hopper-v5" in r.stderr
