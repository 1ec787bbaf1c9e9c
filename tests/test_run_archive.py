"""experiments.run_archive: finished reproduction runs kept in the repository (their curve
and configuration), and `reproduce` using them instead of training again."""

import json
import os

import numpy as np
import pytest

from experiments import claims
from experiments import reproduce
from experiments import run_archive as A

from tests.test_reproduce import _reproduce


def test_resolve_expands_flagfiles_in_absl_order(tmp_path):
  """Nested flagfiles (relative to cwd), comments, a later setting wins, --x / --nox, and
  the flags that only say where a run writes left out."""
  (tmp_path / "inner.flags").write_text("# comment\n// comment\n--lr=1e-3\n--overlap\n\n"
                                        "--gamma=0.9\n")
  (tmp_path / "outer.flags").write_text("--flagfile=inner.flags\n--lr=3e-4\n"
                                        "--novalue_network\n")
  got = A.resolve(["--gamma=0.5", "--flagfile=outer.flags", "--nooverlap",
                   "--run_dir=/x", "--log_every_s=60", "--checkpoint_every=5",
                   "--num_seeds=5", "--seed=100"], str(tmp_path))
  assert got == {"gamma": "0.9", "lr": "3e-4", "overlap": "false",
                 "value_network": "false"}
  with pytest.raises(ValueError, match="'oops' in .*bad.flags: not a flag"):
    (tmp_path / "bad.flags").write_text("oops\n")
    A.resolve(["--flagfile=bad.flags"], str(tmp_path))


def test_resolve_matches_the_task_flagfiles():
  """The real files: halfcheetah.flags includes paper.flags and sets its own scale;
  ddpg.flags after it overrides what they share."""
  hc = A.resolve(["--flagfile=experiments/flags/halfcheetah.flags"], reproduce.REPO)
  assert hc["env_id"] == "HalfCheetah-v5" and hc["reward_scale"] == "10"
  assert hc["num_components"] == "4" and hc["policy_gradient"] == "likelihood_ratio"
  dd = A.resolve(["--flagfile=experiments/flags/halfcheetah.flags",
                  "--flagfile=experiments/flags/ddpg.flags"], reproduce.REPO)
  assert dd["algorithm"] == "ddpg" and dd["hidden_sizes"] == "400,300"
  assert dd["reward_scale"] == "1" and dd["env_id"] == "HalfCheetah-v5"


def _curves(seeds, steps, base=0.0):
  return {s: [(t, base + s + t / 100) for t in steps] for s in seeds}


def test_write_then_lookup(tmp_path):
  cfg = {"alpha": "1", "seed": "100"}
  curves = _curves((100, 101), (100, 200, 300))
  curves[101][1] = (200, float("nan"))   # a diverged member's evaluation
  A.write(str(tmp_path), "r", "experiments.run", cfg, "python -m experiments.run ...", 300,
          curves, source="test")
  path, why = A.lookup(str(tmp_path), "r", cfg, [100, 101], 300)
  assert path == str(tmp_path / "r.csv") and why == ""
  got = A.read_curves(path)
  assert got[100] == {100: 101.0, 200: 102.0, 300: 103.0}
  assert np.isnan(got[101][200]) and got[101][300] == 104.0
  meta = json.loads((tmp_path / "r.json").read_text())
  assert meta["seeds"] == [100, 101] and meta["target_env_steps"] == 300
  # The seed is not configuration (the archive lists its seeds): an archive written before
  # `seed` joined NOT_CONFIG, which lists it, still matches.
  assert meta["config"] == {"alpha": "1"} and meta["source"] == "test"
  assert not list(tmp_path.glob("*.tmp"))
  assert A.lookup(str(tmp_path), "r", {"alpha": "1", "seed": "105"}, [100, 101], 300)[0]
  meta["config"]["seed"] = "100"
  (tmp_path / "r.json").write_text(json.dumps(meta))
  assert A.lookup(str(tmp_path), "r", {"alpha": "1"}, [100, 101], 300)[0]
  # Another configuration: not used, and the flags that differ are named with both values.
  path, why = A.lookup(str(tmp_path), "r", {"alpha": "0", "seed": "100", "tau": "1"},
                       [100, 101], 300)
  assert path is None
  assert why == ("archived with other flags (alpha: 1 there, 0 now, tau: unset there, 1 "
                 "now): not used")
  # A seed it lacks, or a longer target: not used.
  assert A.lookup(str(tmp_path), "r", cfg, [100, 101, 102], 300) == (
      None, "archived without seed(s) 102 at 300 env steps: not used")
  assert A.lookup(str(tmp_path), "r", cfg, [100], 400)[0] is None
  assert A.lookup(str(tmp_path), "other", cfg, [100], 300) == (None, "")
  assert A.lookup(None, "r", cfg, [100], 300) == (None, "")


def test_add_puts_more_seeds_beside_the_archived_ones(tmp_path):
  """add(): seeds trained later with the same configuration and target join the archived
  run (a seed archived again is replaced, each command kept with its seeds); another
  configuration or target replaces the archive."""
  d, cfg = str(tmp_path), {"alpha": "1"}
  assert A.add(d, "r", "experiments.run", cfg, "cmd100", 300,
               _curves((100, 101), (100, 200, 300)), source="s100") == [100, 101]
  held = A.add(d, "r", "experiments.run", dict(cfg, seed="102"), "cmd102", 300,
               _curves((101, 102, 103), (100, 200, 300), base=1000.0), source="s102")
  assert held == [100, 101, 102, 103]
  got = A.read_curves(str(tmp_path / "r.csv"))
  assert got[100][300] == 103.0            # kept from the first command
  assert got[101][300] == 1104.0           # trained again: the new curve
  assert got[103] == {100: 1104.0, 200: 1105.0, 300: 1106.0}
  meta = json.loads((tmp_path / "r.json").read_text())
  assert meta["seeds"] == [100, 101, 102, 103] and meta["config"] == cfg
  assert meta["command"] == "cmd100" and meta["source"] == "s100"
  assert meta["parts"] == [
      dict(seeds=[100], command="cmd100", source="s100"),
      dict(seeds=[101, 102, 103], command="cmd102", source="s102")]
  assert A.lookup(d, "r", cfg, [100, 101, 102, 103], 300)[0]
  # Every seed the first command still gave trained again: its part is gone.
  A.add(d, "r", "experiments.run", cfg, "cmd99", 300, _curves((100,), (100, 200, 300)),
        source="s99")
  meta = json.loads((tmp_path / "r.json").read_text())
  assert [p["command"] for p in meta["parts"]] == ["cmd102", "cmd99"]
  assert meta["command"] == "cmd102" and meta["source"] == "s102"
  # Another configuration, or another target: in place of the old seeds.
  assert A.add(d, "r", "experiments.run", {"alpha": "0"}, "c", 300,
               _curves((105,), (100, 200, 300)), source="x") == [105]
  assert "parts" not in json.loads((tmp_path / "r.json").read_text())
  assert A.add(d, "r", "experiments.run", {"alpha": "0"}, "c", 200,
               _curves((100,), (100, 200)), source="x") == [100]
  assert sorted(A.read_curves(str(tmp_path / "r.csv"))) == [100]


def test_more_seeds_for_an_arm_join_its_archived_run(tmp_path):
  """`--first_seed=102 --seeds=2` trains only seeds 102-103, in <run>-seed102, and adds them
  to the archived seeds 100-101; `--seeds=4` then analyzes all four from the archive with
  nothing trained, and `--seeds=2` reads only 100-101 of the four."""
  archive, runs = tmp_path / "archive", tmp_path / "runs"
  _archive_claim(str(archive), "hard")
  res = _reproduce(runs, "--claim=hard", "--arms=hard (alpha=0)", f"--archive_dir={archive}",
                   "--first_seed=102", "--seeds=2", f"--out={tmp_path}/o102")
  assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
  assert sorted(p.name for p in (runs / "smoke").iterdir()) == ["halfcheetah-hard-seed102"]
  assert "archived in" in res.stdout and "(seeds 100-103)" in res.stdout, res.stdout
  meta = json.loads((archive / "smoke" / "halfcheetah-hard.json").read_text())
  assert meta["seeds"] == [100, 101, 102, 103]
  assert [p["seeds"] for p in meta["parts"]] == [[100, 101], [102, 103]]
  assert "--seed=102" in meta["parts"][1]["command"]
  res = _reproduce(runs, "--claim=hard", f"--archive_dir={archive}", "--first_seed=104",
                   "--seeds=2", "--status")
  assert ("not started 0 / 300 env steps (2 seeds); run directory "
          "halfcheetah-hard-seed104, archived with halfcheetah-hard; archived without "
          "seed(s) 104, 105 at 300 env steps: not used") in res.stdout, res.stdout
  r102 = json.loads((tmp_path / "o102" / "verdict.json").read_text())
  assert r102["arms"]["hard (alpha=0)"]["seeds"] == [102, 103]
  res = _reproduce(runs, "--claim=hard", f"--archive_dir={archive}", "--seeds=4",
                   "--status")
  lines = res.stdout.splitlines()
  assert lines[1].split()[:3] == ["halfcheetah-paper", "not", "started"], res.stdout
  assert "archived without seed(s) 102, 103" in lines[1]
  assert lines[2].split()[:2] == ["halfcheetah-hard", "complete"], res.stdout
  # The soft arm has only 100-101 archived: the 4-seed analysis takes just the hard arm.
  res = _reproduce(runs, "--claim=hard", "--arms=hard (alpha=0)", f"--archive_dir={archive}",
                   "--seeds=4", f"--out={tmp_path}/o4")
  assert res.returncode == 0, res.stderr[-2000:]
  assert res.stdout.count("complete in the archive") == 1 and "run halfcheetah-hard:" not in (
      res.stdout)
  r4 = json.loads((tmp_path / "o4" / "verdict.json").read_text())
  hard4 = r4["arms"]["hard (alpha=0)"]
  assert hard4["seeds"] == [100, 101, 102, 103]
  assert hard4["final"][:2] == [2102.0, 2103.0] and hard4["final"][2:] == r102["arms"][
      "hard (alpha=0)"]["final"]
  res = _reproduce(runs, "--claim=hard", f"--archive_dir={archive}", f"--out={tmp_path}/o2")
  assert res.returncode == 0, res.stderr[-2000:]
  r2 = json.loads((tmp_path / "o2" / "verdict.json").read_text())
  assert [a["seeds"] for a in r2["arms"].values()] == [[100, 101], [100, 101]]


def _archive_claim(archive, claim, seeds=(100, 101)):
  """Archive every run of a claim at the smoke budget with synthetic curves (arm i: level
  1000 * (i + 1)) and the configuration its command has now."""
  arms = claims.plan(claim)
  for i, a in enumerate(arms):
    argv = reproduce.run_flags("smoke", a.run, 100, len(seeds), "/elsewhere/" + a.run.name)
    A.write(os.path.join(archive, "smoke"), a.run.name, a.run.runner,
            A.resolve(argv, reproduce.REPO), "python -m ...", 300,
            _curves(seeds, (100, 200, 300), 1000.0 * (i + 1)), source="test")
  return arms


def test_reproduce_reads_archived_runs_instead_of_training(tmp_path):
  """Both runs of `hard` archived: nothing trains (no run directory appears), the verdict
  comes from the archived curves; a changed flagfile value makes an archived run stale,
  and --status says which flag differs."""
  archive, runs = tmp_path / "archive", tmp_path / "runs"
  _archive_claim(str(archive), "hard")
  res = _reproduce(runs, "--claim=hard", f"--archive_dir={archive}", f"--out={tmp_path}/o")
  assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
  assert res.stdout.count("complete in the archive") == 2, res.stdout
  assert not (runs / "smoke" / "halfcheetah-paper").exists()
  # An archived run has no run directory to keep a metrics.csv from.
  assert sorted(os.listdir(tmp_path / "o")) == [
      "curves.csv", "figure.png", "returns.csv", "table.md", "verdict.json"]
  result = json.loads((tmp_path / "o" / "verdict.json").read_text())
  finals = {a["run"]: a["final"] for a in result["arms"].values()}
  # final = mean of the last 3 evaluations: level + seed + (1 + 2 + 3)
  assert finals == {"halfcheetah-paper": [1102.0, 1103.0],
                    "halfcheetah-hard": [2102.0, 2103.0]}
  assert "Left out" not in (tmp_path / "o" / "table.md").read_text()
  # A subset of the arms: the outputs say what was left untested.
  res = _reproduce(runs, "--claim=hard", "--arms=hard (alpha=0)", f"--archive_dir={archive}",
                   f"--out={tmp_path}/sub")
  assert res.returncode == 0, res.stderr[-2000:]
  assert ("Left out of this analysis: arms soft (alpha=1). The parts that need them are "
          "not tested") in (tmp_path / "sub" / "table.md").read_text()
  # Stale: the archived soft run was trained with another reward scale.
  meta_path = archive / "smoke" / "halfcheetah-paper.json"
  meta = json.loads(meta_path.read_text())
  meta["config"]["reward_scale"] = "3"
  meta_path.write_text(json.dumps(meta))
  res = _reproduce(runs, "--claim=hard", f"--archive_dir={archive}", "--status")
  assert res.returncode == 0, res.stderr
  lines = res.stdout.splitlines()
  assert lines[1].split()[:3] == ["halfcheetah-paper", "not", "started"], res.stdout
  assert "archived with other flags (reward_scale: 3 there, 10 now): not used" in lines[1]
  assert lines[2].split()[:2] == ["halfcheetah-hard", "complete"]
  assert "in the archive" in lines[2]
  # --archive_dir= turns the archive off.
  res = _reproduce(runs, "--claim=hard", "--archive_dir=", "--status")
  assert "in the archive" not in res.stdout and res.stdout.count("not started") == 2


def test_archive_dir_defaults():
  assert reproduce.archive_dir(None, "smoke") is None
  assert reproduce.archive_dir(None, "cpu") == os.path.join(
      reproduce.REPO, "docs", "reproduction", "runs", "cpu")
  assert reproduce.archive_dir("", "cpu") is None
  assert reproduce.archive_dir("/a", "paper") == "/a/paper"


def test_committed_archive_is_consistent():
  """Every archived run in docs/reproduction/runs: its seeds complete at its target, and
  its configuration the one its claim's command has today (else it is stale and unused)."""
  runs = {a.run.name: a.run for c in claims.CLAIMS
          for a in claims.plan(c, claims.TASKS)}
  for budget in ("cpu", "paper"):
    d = os.path.join(reproduce.ARCHIVE, budget)
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else ():
      if not name.endswith(".json"):
        continue
      meta = json.load(open(os.path.join(d, name)))
      if meta["run"] not in runs:
        # A settings claim's run (named by its --setting): rebuilt from its command, the
        # task flagfile followed by the setting's flag.
        words = meta["command"].split()[3:]
        task = os.path.basename(words[0].split("=", 1)[1]).removesuffix(".flags")
        setting = words[1].removeprefix("--")
        runs.update((a.run.name, a.run) for a in claims.plan("settings", (task,),
                                                             (setting,)))
      run = runs[meta["run"]]
      assert meta["target_env_steps"] == reproduce.target_steps(budget, run)
      argv = reproduce.run_flags(budget, run, meta["seeds"][0], len(meta["seeds"]), "/x")
      path, why = A.lookup(d, run.name, A.resolve(argv, reproduce.REPO), meta["seeds"],
                           meta["target_env_steps"])
      assert path, (name, why)
