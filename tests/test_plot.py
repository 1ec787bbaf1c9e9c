"""experiments.plot --metrics: any metrics.csv column as a panel (sac_jax.plotting's
metrics_figure), against values written by hand: each member's line is its column, the
mean is the mean over members where every member has a value, a sweep's line per setting
the mean over its seeds; bad input is refused before anything is drawn."""

import csv

import numpy as np
import pytest

from experiments import plot
from sac_jax import plotting

# env_step, member, seed, eval_return, train_q_loss ('' = no value, e.g. no update yet).
ROWS = [(1000, 0, 7, 10.0, ""), (1000, 1, 8, 30.0, 5.0),
        (2000, 0, 7, 20.0, 100.0), (2000, 1, 8, 60.0, 300.0),
        (3000, 0, 7, 40.0, 1000.0), (3000, 1, 8, 50.0, 9000.0)]


def _write(path, rows, setting=None):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["env_step", "member", "seed", "eval_return", "train_q_loss"]
               + (["setting"] if setting else []))
    for r in rows:
      w.writerow(list(r) + ([setting[r[1]]] if setting else []))
  return str(path)


def _lines(ax):
  return {l.get_label(): np.asarray(l.get_ydata(), float) for l in ax.get_lines()}


def test_each_panel_draws_its_column_per_member_and_their_mean(tmp_path):
  path = _write(tmp_path / "metrics.csv", ROWS)
  fig = plotting.metrics_figure(path, ["eval_return", "train_q_loss"],
                                log_y=["train_q_loss"])
  ret, loss = fig.axes
  assert [ret.get_ylabel(), loss.get_ylabel()] == ["eval_return", "train_q_loss"]
  assert ret.get_yscale() == "linear" and loss.get_yscale() == "log"
  got = _lines(ret)
  np.testing.assert_array_equal(got["member 0 (seed 7)"], [10, 20, 40])
  np.testing.assert_array_equal(got["member 1 (seed 8)"], [30, 60, 50])
  np.testing.assert_allclose(got["mean over 2"], [20, 40, 45])
  got = _lines(loss)
  np.testing.assert_array_equal(got["member 0 (seed 7)"], [np.nan, 100, 1000])
  # No mean where a member has no value (never a mean of the members that have one).
  np.testing.assert_allclose(got["mean over 2"], [np.nan, 200, 5000])
  np.testing.assert_array_equal(ret.get_lines()[0].get_xdata(), [1000, 2000, 3000])


def test_a_sweep_draws_the_mean_of_each_setting(tmp_path):
  rows = ROWS + [(1000, 2, 9, 0.0, 1.0), (2000, 2, 9, 2.0, 2.0), (3000, 2, 9, 4.0, 3.0)]
  path = _write(tmp_path / "metrics.csv", rows, setting={0: "tau=0.01", 1: "tau=0.01",
                                                           2: "tau=0.1"})
  ret, loss = plotting.metrics_figure(path, ["eval_return", "train_q_loss"]).axes
  got = _lines(ret)
  assert sorted(got) == ["tau=0.01 (2)", "tau=0.1 (1)"]
  np.testing.assert_allclose(got["tau=0.01 (2)"], [20, 40, 45])
  np.testing.assert_allclose(got["tau=0.1 (1)"], [0, 2, 4])
  got = _lines(loss)
  np.testing.assert_allclose(got["tau=0.01 (2)"], [np.nan, 200, 5000])
  np.testing.assert_allclose(got["tau=0.1 (1)"], [1, 2, 3])


@pytest.mark.parametrize("names, log_y, msg", [
    (["eval_return", "train_qloss"], [], "train_qloss not in .*its columns: env_step, "
                                        "member, seed, eval_return, train_q_loss"),
    (["eval_return"], ["train_q_loss"], "log scale for train_q_loss: not among the columns"),
    ([], [], "no column to draw: name one or more of env_step"),
])
def test_bad_columns_are_refused_naming_what_is_there(tmp_path, names, log_y, msg):
  path = _write(tmp_path / "metrics.csv", ROWS)
  with pytest.raises(ValueError, match=msg):
    plotting.metrics_figure(path, names, log_y)


def test_the_command_line(tmp_path, capsys):
  _write(tmp_path / "metrics.csv", ROWS)
  out = tmp_path / "d.png"
  assert plot.main(["plot", str(tmp_path), "--metrics=eval_return,train_q_loss",
                    "--log_y=train_q_loss", f"--out={out}"]) == 0
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # Without --out: <run>/metrics.png; without --metrics: the return curves, curves.png.
  assert plot.main(["plot", str(tmp_path), "--metrics=train_q_loss"]) == 0
  assert plot.main(["plot", str(tmp_path)]) == 0
  assert (tmp_path / "metrics.png").exists() and (tmp_path / "curves.png").exists()
  capsys.readouterr()
  # A misspelt option or column is one line naming it, and nothing is written.
  assert plot.main(["plot", str(tmp_path), "--metric=train_q_loss",
                    f"--out={tmp_path}/x.png"]) == 2
  assert "unknown argument '--metric=train_q_loss'" in capsys.readouterr().err
  assert not (tmp_path / "x.png").exists()
  assert plot.main(["plot", str(tmp_path), "--metrics=q_loss", f"--out={tmp_path}/y.png"]) == 2
  err = capsys.readouterr().err
  assert "q_loss not in" in err and err.count("\n") == 1
  assert not (tmp_path / "y.png").exists()


@pytest.mark.parametrize("setting", [None, {0: "tau=0.01", 1: "tau=0.1"}])
def test_a_branch_start_is_marked_on_the_curves(tmp_path, monkeypatch, setting):
  """curves.png of a branch: a vertical line at the step, its label beside it (plain
  curves and a sweep's)."""
  path = _write(tmp_path / "metrics.csv", ROWS, setting=setting)
  drawn = []
  monkeypatch.setattr(plotting, "save", lambda fig, out: drawn.append(fig))
  plotting.plot_curves(path, str(tmp_path / "c.png"), mark=(2000, "branched from src"))
  plotting.plot_curves(path, str(tmp_path / "c.png"))
  marked, plain = (fig.axes[0] for fig in drawn)
  vertical = [l for l in marked.get_lines() if list(l.get_xdata()) == [2000, 2000]]
  assert len(vertical) == 1 and vertical[0].get_linestyle() == ":"
  assert [t.get_text() for t in marked.texts] == ["branched from src at 2,000"]
  assert not [l for l in plain.get_lines() if list(l.get_xdata()) == [2000, 2000]]
  assert not plain.texts
