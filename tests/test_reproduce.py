"""experiments.reproduce: the smoke budget of every claim end to end (real experiments.run
processes, tiny networks, 300 env steps), its outputs, resume, and bad input."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from experiments import claim_analysis
from experiments import claim_report
from experiments import claims
from experiments import reproduce

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _reproduce(runs_dir, *args):
  return subprocess.run([sys.executable, "-m", "experiments.reproduce", "--budget=smoke",
                         f"--runs_dir={runs_dir}", *args],
                        cwd=REPO, capture_output=True, text=True)


def _check_outputs(out, claim, arms):
  result = json.loads((out / "verdict.json").read_text(),
                      parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
  assert result["claim"] == claim and result["budget"] == "smoke"
  assert result["verdict"] in ("holds", "does not hold", "inconclusive at this budget")
  assert len(result["arms"]) == arms and result["parts"]
  assert all(len(a["final"]) == 2 and a["env_steps"] == 300 for a in result["arms"].values())
  assert len(result["commands"]) >= 1 and all(
      "experiments.run" in c or "experiments.peer_learning" in c for c in result["commands"])
  rows = list(csv.DictReader(open(out / "returns.csv")))
  assert len(rows) == 2 * arms
  # curves.csv holds every evaluation (3 per seed).
  curves = list(csv.DictReader(open(out / "curves.csv")))
  assert len(curves) == 3 * 2 * arms
  assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert "smoke budget" in (out / "table.md").read_text()
  return result


def test_smoke_budget_of_the_halfcheetah_claims(tmp_path):
  """hard, grad_steps, components and seeds share their runs (halfcheetah-paper is an arm
  of all four): 8 experiments.run processes in all."""
  runs, archive = tmp_path / "runs", tmp_path / "archive"
  for claim, arms in (("hard", 2), ("grad_steps", 3), ("components", 4), ("seeds", 2)):
    out = tmp_path / claim
    res = _reproduce(runs, f"--claim={claim}", f"--out={out}", f"--archive_dir={archive}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = _check_outputs(out, claim, arms)
    if claim == "hard":
      first = result
  assert sorted(p.name for p in (runs / "smoke").iterdir()) == sorted(
      ["halfcheetah-paper", "halfcheetah-hard", "halfcheetah-G4",
       "halfcheetah-G16", "halfcheetah-K1", "halfcheetah-K2", "halfcheetah-K8",
       "halfcheetah-ddpg"])
  # Rerunning a claim finds its runs complete and recomputes the same statistics.
  again = _reproduce(runs, "--claim=hard", f"--out={tmp_path}/hard")
  assert again.returncode == 0 and "is complete" in again.stdout, again.stdout[-2000:]
  assert json.loads((tmp_path / "hard" / "verdict.json").read_text())["arms"] == \
      first["arms"]
  # Each complete run was archived: its every evaluation, as its metrics.csv has them.
  assert sorted(p.name for p in (archive / "smoke").iterdir()) == sorted(
      f"{r}.{ext}" for r in os.listdir(runs / "smoke") if r != "claims"
      for ext in ("csv", "json"))
  from experiments import run_archive
  for r in os.listdir(runs / "smoke"):
    if r != "claims":
      assert run_archive.read_curves(str(archive / "smoke" / f"{r}.csv")) == \
          run_archive.read_curves(str(runs / "smoke" / r / "metrics.csv")), r
  # The machine's run directories gone, the archive alone gives the same verdict.
  shutil.rmtree(runs)
  again = _reproduce(runs, "--claim=hard", f"--out={tmp_path}/hard",
                     f"--archive_dir={archive}")
  assert again.returncode == 0 and again.stdout.count("complete in the archive") == 2
  assert json.loads((tmp_path / "hard" / "verdict.json").read_text())["arms"] == \
      first["arms"]


def test_smoke_budget_of_the_per_task_claims(tmp_path):
  """tasks (paper and modern), sac_vs_ddpg, mixture_gradients and overlap on Hopper only
  (the paper run is shared by all four)."""
  runs = tmp_path / "runs"
  for claim, arms in (("tasks", 2), ("sac_vs_ddpg", 2), ("mixture_gradients", 3),
                      ("settings", 2), ("overlap", 2)):
    out = tmp_path / claim
    res = _reproduce(runs, f"--claim={claim}", "--tasks=hopper", f"--out={out}",
                     *(["--setting=tau=0.005"] if claim == "settings" else []))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = _check_outputs(out, claim, arms)
    if claim == "sac_vs_ddpg":
      assert [p["part"] for p in result["parts"]] == [
          "hopper: SAC final > DDPG G=1 final", "hopper: SAC auc > DDPG G=1 auc"]
    if claim == "mixture_gradients":
      assert len(result["parts"]) == 2
    if claim == "settings":   # the default arm is the tasks claim's run: not trained again
      assert [p["part"] for p in result["parts"]] == [
          "hopper: default mean final >= 1500", "hopper: tau=0.005 mean final >= 1500",
          "hopper: tau=0.005 final > default final"]
      assert res.stdout.count("starting 2 member(s)") == 1, res.stdout[-2000:]
      assert "--tau=0.005" in " ".join(result["commands"])
  assert [p["part"] for p in result["parts"]] == [
      "hopper: overlap final agrees with synchronous final within 15%",
      "hopper: overlap auc agrees with synchronous auc within 15%"]
  assert "--overlap" in " ".join(result["commands"])


def test_smoke_budget_of_the_parity_claim(tmp_path):
  """sac_jax modern against the peer (here the uniform-random stand-in, no sbx needed), each
  its own process: experiments.run and experiments.peer_learning; the rerun resumes both."""
  runs = tmp_path / "runs"
  args = ("--claim=parity", "--tasks=hopper", "--peer=random", f"--out={tmp_path}/parity")
  res = _reproduce(runs, *args)
  assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
  result = _check_outputs(tmp_path / "parity", "parity", 2)
  assert [p["part"].split(" beyond")[0] for p in result["parts"]] == [
      "hopper: sac_jax modern final not below stable-baselines-jax final",
      "hopper: sac_jax modern auc not below stable-baselines-jax auc"]
  assert "uniform-random stand-in" in result["note"]
  ours, peer = result["commands"]
  assert ours.startswith("python -m experiments.run ") and "modern.flags" in ours
  assert peer.startswith("python -m experiments.peer_learning --env_id=Hopper-v5 ")
  assert "--peer=random" in peer and "--total_env_steps=300" in peer
  assert sorted(p.name for p in (runs / "smoke").iterdir()) == [
      "hopper-modern", "hopper-sbx"]
  again = _reproduce(runs, *args)
  assert again.returncode == 0 and again.stdout.count("is complete") == 2, again.stdout


def _parity(ours_level, ours_noise, peer_level, peer_noise, task="hopper"):
  """Curves level x ramp + a constant per seed: final = 0.8 level + noise, AUC = 0.6 level
  + noise."""
  steps, ramp = np.arange(1, 6) * 5000, np.array([0.2, 0.4, 0.6, 0.8, 1.0])
  curves = lambda level, noise: {100 + i: level * ramp + e for i, e in enumerate(noise)}
  return {f"{task}/sac_jax modern": (steps, curves(ours_level, ours_noise)),
          f"{task}/stable-baselines-jax": (steps, curves(peer_level, peer_noise))}


TIGHT = [-2., -1, 0, 1, 2]


@pytest.mark.parametrize("ours, peer, verdict", [
    ((1000, [3., -3, 1, -1, 0]), (1000, TIGHT), "holds"),     # the same returns
    ((2000, TIGHT), (1000, TIGHT), "holds"),                    # ours far higher
    ((500, TIGHT), (1000, TIGHT), "does not hold"),             # the peer far higher
    # The peer higher by 3%, every seed: inside the 15% margin but beyond seed noise.
    ((970, TIGHT), (1000, TIGHT), "does not hold"),
    # 10% lower with a wide spread: neither shown below nor shown within 15%.
    ((900, [-400., -200, 0, 200, 400]), (1000, TIGHT), "inconclusive at this budget"),
])
def test_parity_verdicts_on_known_answers(ours, peer, verdict):
  arms = claims.plan("parity", ("hopper",))
  assert [a.run.runner for a in arms] == ["experiments.run", "experiments.peer_learning"]
  r = claim_analysis.analyze("parity", arms, _parity(*ours, *peer), "cpu")
  assert [p["verdict"] for p in r["parts"]] == [verdict, verdict] and r["verdict"] == verdict
  final, auc = r["parts"]
  # effect: peer - ours; the margin: 15% of the peer's mean (final 0.8 and AUC 0.6 level).
  assert final["effect"] == pytest.approx(0.8 * (peer[0] - ours[0]), abs=1.0)
  assert auc["effect"] == pytest.approx(0.6 * (peer[0] - ours[0]), abs=1.0)
  assert final["margin"] == pytest.approx(0.15 * 0.8 * peer[0], abs=0.1)
  assert auc["margin"] == pytest.approx(0.15 * 0.6 * peer[0], abs=0.1)


def test_parity_parts_per_task_and_the_run_commands():
  data = {**_parity(1000, TIGHT, 1000, [3., -3, 1, -1, 0], "halfcheetah"),
          **_parity(500, TIGHT, 1000, TIGHT, "hopper")}
  r = claim_analysis.analyze("parity", claims.plan("parity", ("halfcheetah", "hopper")), data,
                             "cpu")
  assert [(p["part"].split(":")[0], p["verdict"]) for p in r["parts"]] == [
      ("halfcheetah", "holds"), ("halfcheetah", "holds"),
      ("hopper", "does not hold"), ("hopper", "does not hold")]
  assert r["verdict"] == "does not hold"
  ours, peer = (a.run for a in claims.plan("parity", ("halfcheetah",)))
  cpu = reproduce.run_flags("cpu", peer, 100, 5, "/r/halfcheetah-sbx")
  assert cpu == ["--env_id=HalfCheetah-v5", "--seed=100", "--num_seeds=5",
                 "--run_dir=/r/halfcheetah-sbx", "--peer=sbx", "--total_env_steps=100000",
                 "--eval_every=5000", "--eval_episodes=5"]
  # Ours is the tasks claim's modern run, 100k steps like the peer's at the cpu budget.
  assert ours == next(a.run for a in claims.plan("tasks", ("halfcheetah",))
                      if a.label == "modern")
  mine = reproduce.run_flags("cpu", ours, 100, 5, "/r/halfcheetah-modern")
  assert "--flagfile=experiments/flags/modern.flags" in mine
  assert "--total_env_steps=100000" in mine and "--buffer_size=100000" in mine
  for flag in ("--eval_every=5000", "--eval_episodes=5", "--seed=100", "--num_seeds=5"):
    assert flag in mine and flag in cpu


def test_arm_statistics_follow_the_metrics(tmp_path):
  """analyze() reads final = mean of the last 3 evaluations per seed, max = best."""
  steps = np.arange(1, 6) * 5000
  curves = {100: np.array([0., 1, 2, 3, 4]), 101: np.array([10., 20, 30, 40, 50])}
  arms = claims.plan("grad_steps")
  assert [a.label for a in arms] == ["G=1", "G=4", "G=16"]
  data = {a.label: (steps, {s: c + 100 * i for s, c in curves.items()})
          for i, a in enumerate(arms)}
  # G = 1 ran longer: the table keeps its whole curve (35k), its comparison with G = 4
  # cuts it at G = 4's horizon (25k); a NaN (diverged) evaluation keeps the member with
  # its finite ones.
  long = np.arange(1, 8) * 5000
  data["G=1"] = (long, {100: np.array([0., 1, 2, 3, 4, 99, 99]),
                        101: np.array([10., 20, 30, 40, np.nan, 99, 99])})
  r = claim_analysis.analyze("grad_steps", arms, data, "cpu")
  assert r["arms"]["G=1"]["final"] == [(4 + 99 + 99) / 3, (40 + 99 + 99) / 3]
  assert r["arms"]["G=1"]["env_steps"] == 35000
  assert r["arms"]["G=16"]["max"] == [204.0, 250.0]
  assert [p["part"] for p in r["parts"]] == ["G=4 final > G=1 final",
                                             "G=16 final > G=4 final"]
  assert [p["env_steps"] for p in r["parts"]] == [25000, 25000]
  # At 25k G = 1's finals are 3 and 30 (its seed 101 from its 3 finite evaluations).
  assert r["parts"][0]["means"] == pytest.approx([(103 + 140) / 2, (3 + 30) / 2])


def test_figure_draws_seeds_and_bands_only_for_a_few_arms():
  """A panel of up to DETAILED_ARMS arms draws each seed and a min-max band per arm; a
  panel of more draws the means alone (the bands of nine arms hide one another)."""
  import matplotlib.collections as mc
  steps = np.arange(1, 5) * 5000
  few, many = claim_report.DETAILED_ARMS, claim_report.DETAILED_ARMS + 1
  arms = ([claims.Arm(f"a{i}", claims.Run(f"a{i}", "hopper"), "hopper")
           for i in range(few)] +
          [claims.Arm(f"b{i}", claims.Run(f"b{i}", "walker2d"), "walker2d")
           for i in range(many)])
  data = {claims.key(a): (steps, {100: steps * 0.1 + i, 101: steps * 0.2 + i})
          for i, a in enumerate(arms)}
  result = dict(budget="cpu", verdict="holds",
                arms={claims.key(a): dict(final_mean=1.0) for a in arms})
  fig = claim_report.figure("settings", arms, data, result)
  left, right = fig.axes[:2]
  bands = lambda ax: sum(isinstance(c, mc.PolyCollection) for c in ax.collections)
  assert (bands(left), len(left.lines)) == (few, few * 3)      # 2 seeds + the mean each
  assert (bands(right), len(right.lines)) == (0, many)         # the means alone
  assert [t.get_text().split(" (")[0] for t in right.get_legend().get_texts()] == \
      [f"b{i}" for i in range(many)]
  assert "more than 4 arms: the means over seeds alone" in fig._suptitle.get_text()
  assert "each seed thin" in fig._suptitle.get_text()   # the other panel still does


@pytest.mark.parametrize("budget, task, length, steps, every", [
    ("cpu", "walker2d", "long", 300_000, 30_000),      # a tenth of the run
    ("cpu", "halfcheetah", "short", 100_000, 10_000),
    ("paper", "hopper", "long", 1_000_000, 100_000),
    ("paper", "halfcheetah", "long", 3_000_000, 100_000),  # capped: a kill loses <= 100k
])
def test_runs_checkpoint_every_tenth_at_most_every_100k(budget, task, length, steps, every):
  argv = reproduce.run_flags(budget, claims.Run(f"{task}-x", task, (), length), 100, 5,
                             "/r")
  assert f"--total_env_steps={steps}" in argv
  assert f"--checkpoint_every={every}" in argv
  assert f"--buffer_size={min(steps, 1_000_000)}" in argv


def test_grad_steps_on_other_tasks_is_one_panel_per_task():
  """--tasks carries grad_steps past HalfCheetah: on Walker2d G = 1 (the tasks claim's run)
  against G = 4 at the long length, its own panel and parts; HalfCheetah alone keeps the
  unnamed panel and G = 16."""
  assert claims.CLAIM_TASKS["grad_steps"] == ("halfcheetah",)
  arms = claims.plan("grad_steps", ("halfcheetah", "walker2d"))
  assert [(a.panel, a.label, a.run.name) for a in arms] == [
      ("halfcheetah", "G=1", "halfcheetah-paper"), ("halfcheetah", "G=4", "halfcheetah-G4"),
      ("halfcheetah", "G=16", "halfcheetah-G16"), ("walker2d", "G=1", "walker2d-paper"),
      ("walker2d", "G=4", "walker2d-G4")]
  g4 = arms[-1].run
  assert reproduce.target_steps("cpu", g4) == 300_000
  assert reproduce.target_steps("cpu", arms[1].run) == 100_000
  assert "--grad_steps=4" in reproduce.run_flags("cpu", g4, 100, 5, "/x")
  assert "--flagfile=experiments/flags/walker2d.flags" in reproduce.run_flags(
      "cpu", g4, 100, 5, "/x")
  steps = np.arange(1, 7) * 50_000
  low = {100 + i: np.linspace(0, 600, 6) + i for i in range(5)}
  high = {100 + i: np.linspace(0, 1200, 6) + 10 * i for i in range(5)}
  walker = [a for a in arms if a.panel == "walker2d"]
  data = {"walker2d/G=1": (steps, low), "walker2d/G=4": (steps, high)}
  r = claim_analysis.analyze("grad_steps", walker, data, "cpu")
  assert [p["part"] for p in r["parts"]] == ["walker2d: G=4 final > G=1 final"]
  assert r["parts"][0]["verdict"] == "holds" and r["parts"][0]["env_steps"] == 300_000
  # Reversed: G = 4 lower; the part does not hold.
  r = claim_analysis.analyze("grad_steps", walker, {"walker2d/G=1": (steps, high),
                                                    "walker2d/G=4": (steps, low)}, "cpu")
  assert r["parts"][0]["verdict"] == "does not hold"
  # Both tasks: each panel's arms compared among themselves, never across panels.
  data.update({f"halfcheetah/{g}": (steps, high) for g in ("G=1", "G=4", "G=16")})
  r = claim_analysis.analyze("grad_steps", arms, data, "cpu")
  assert [p["part"] for p in r["parts"]] == [
      "halfcheetah: G=4 final > G=1 final", "halfcheetah: G=16 final > G=4 final",
      "walker2d: G=4 final > G=1 final"]
  assert [a.panel for a in claims.plan("grad_steps")] == ["", "", ""]


def _one_line(res):
  """A refusal: exit status 2 and one line, `error: ...` (never the module's help, never a
  traceback)."""
  lines = res.stderr.strip().splitlines()
  assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (
      res.returncode, res.stderr[-3000:])
  return lines[0]


def test_bad_input_is_one_clear_line(tmp_path):
  res = _reproduce(tmp_path, "--claim=nope")   # absl's own flag check: its two lines
  assert res.returncode != 0 and ("tasks|sac_vs_ddpg|seeds|hard|grad_steps|components|"
                                  "mixture_gradients|overlap|parity") in res.stderr
  assert "--seeds=1" in _one_line(_reproduce(tmp_path, "--claim=hard", "--seeds=1"))
  assert "bogus" in _one_line(_reproduce(tmp_path, "--claim=hard", "--arms=bogus"))
  assert "--claim is required" in _one_line(_reproduce(tmp_path))
  # Analyzing runs that were never started names them instead of a traceback.
  res = _reproduce(tmp_path, "--claim=hard", "--analyze_only")
  assert "halfcheetah-paper, halfcheetah-hard" in _one_line(res)
  # parity's tasks default to HalfCheetah and Hopper (the others' to all four).
  res = _reproduce(tmp_path, "--claim=parity", "--analyze_only")
  assert ("run(s) halfcheetah-modern, halfcheetah-sbx, hopper-modern, "
          "hopper-sbx: run" in res.stderr), res.stderr


@pytest.mark.parametrize("claim", claims.CLAIMS)
def test_a_subset_of_arms_gets_the_parts_it_can(claim):
  """--arms may pick any subset: analyze() tests the parts whose arms are all there and
  never reaches a verdict from a part it cannot test."""
  arms = claims.plan(claim, ("halfcheetah", "hopper"),
                     ("tau=0.005", "lr=1e-4") if claim == "settings" else ())
  steps = np.arange(1, 5) * 5000
  rng = np.random.default_rng(0)
  data = {claims.key(a): (steps, {s: rng.normal(100 * i, 10, 4) for s in (100, 101, 102)})
          for i, a in enumerate(arms)}
  full = [p["part"] for p in claim_analysis.analyze(claim, arms, data, "cpu")["parts"]]
  assert full
  for a in arms:
    r = claim_analysis.analyze(claim, [a], data, "cpu")
    if claim == "tasks" and a.label == "paper":   # its bar needs no other arm
      assert [p["part"] for p in r["parts"]] == [f"{a.panel}: paper config mean final "
                                                 f">= {claims.THRESHOLDS[a.panel]:g}"]
      continue
    if claim == "settings":   # every arm's bar needs no other arm
      assert [p["part"] for p in r["parts"]] == [
          f"{a.panel}: {a.label} mean final >= {claims.THRESHOLDS[a.panel]:g}"]
      if a.label == "default":   # no variant: the search has not been made
        assert r["verdict"] == "inconclusive at this budget" and "no --setting" in r["note"]
      continue
    assert r["parts"] == [] and r["verdict"] == "inconclusive at this budget", (a, r)
    assert "no part" in r["note"]
  if claim == "components":   # its parts are relative to the best arm there is
    return
  # Without the last arm: a strict subset of the parts, in the same order.
  parts = [p["part"] for p in claim_analysis.analyze(claim, arms[:-1], data, "cpu")["parts"]]
  assert [p for p in full if p in parts] == parts, (claim, parts)
  assert claim == "tasks" or parts != full   # tasks' modern arm is in no part


def test_every_claim_has_its_rule_and_no_other_is_analyzed():
  """A claim in claims.CLAIMS without a rule in claim_analysis (or a rule for a claim the
  CLI does not offer) fails here, not in a user's run; an unknown claim is refused by name."""
  assert sorted(claim_analysis.RULES) == sorted(claims.CLAIMS)
  arms = claims.plan("hard")
  data = {claims.key(a): (np.arange(1, 4) * 5000, {100: np.ones(3), 101: np.ones(3)})
          for a in arms}
  with pytest.raises(ValueError, match="claim='bogus': must be one of"):
    claim_analysis.analyze("bogus", arms, data, "cpu")


def _metrics(run_dir, rows):
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, "metrics.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["env_step", "member", "seed", "eval_return"])
    for seed, step in rows:
      w.writerow([step, seed - 100, seed, 1.0])


def test_status_says_where_each_run_stands(tmp_path):
  """--status reads the run directories (smoke budget: 300 env steps, 2 seeds): complete,
  under way with the checkpoint a rerun resumes from, trained with fewer seeds, not
  started; the peer's seeds one after another, each with or without its checkpoint."""
  base = tmp_path / "smoke"
  hard = claims.plan("hard")
  soft_run, hard_run = hard[0].run, hard[1].run
  _metrics(base / soft_run.name, [(s, t) for s in (100, 101) for t in (100, 200, 300)])
  _metrics(base / hard_run.name, [(s, t) for s in (100, 101) for t in (100, 200)]
           + [(100, 300), (100, 100)])   # the last evaluated step counts, not the last row
  for step in ("100", "200"):
    os.makedirs(base / hard_run.name / "checkpoints" / step)
  st = reproduce.run_status(hard_run, str(base / hard_run.name), "smoke", 100, 2)
  assert st["state"] == "under way" and st["reached"] == {100: 300, 101: 200}
  assert reproduce.format_status(st).split()[1:] == (
      "under way 200 / 300 env steps (2 seeds); resumes from the checkpoint at 200".split())
  st = reproduce.run_status(soft_run, str(base / soft_run.name), "smoke", 100, 2)
  assert st["state"] == "complete" and st["complete"] == [100, 101]
  # Trained with 1 seed where the claim asks 2.
  k1 = claims.Run("halfcheetah-K1", "halfcheetah")
  _metrics(base / k1.name, [(100, t) for t in (100, 200, 300)])
  line = reproduce.format_status(reproduce.run_status(k1, str(base / k1.name), "smoke",
                                                      100, 2))
  assert "partial" in line and "seeds 101 are not in this run" in line
  assert "--seeds=1" in line
  assert "not started 0 / 300" in reproduce.format_status(reproduce.run_status(
      claims.Run("halfcheetah-K8", "halfcheetah"), str(base / "none"), "smoke", 100, 2))
  # The peer: seed 100 complete, 101 part way with its checkpoint, 102 part way without.
  sbx = claims.plan("parity", ["hopper"])[1].run
  assert sbx.runner == claims.PEER_RUNNER
  _metrics(base / sbx.name, [(100, t) for t in (100, 200, 300)] + [(101, 100), (101, 200),
                                                                   (102, 100)])
  os.makedirs(base / sbx.name / "checkpoints")
  (base / sbx.name / "checkpoints" / "seed_101.pkl").write_bytes(b"x")
  line = reproduce.format_status(reproduce.run_status(sbx, str(base / sbx.name), "smoke",
                                                      100, 3))
  assert line.split(None, 1)[1] == (
      "under way   1 / 3 seeds complete (300 env steps each); seed 101 at 200 (resumes "
      "there); seed 102 at 100 (no checkpoint: restarts)"), line
  # The command line: one claim, and every claim's runs without --claim; nothing runs.
  res = _reproduce(tmp_path, "--claim=hard", "--status")
  assert res.returncode == 0, res.stderr
  lines = res.stdout.splitlines()
  assert lines[1].split()[:2] == ["halfcheetah-paper", "complete"], res.stdout
  assert lines[2].split()[:3] == ["halfcheetah-hard", "under", "way"], res.stdout
  res = _reproduce(tmp_path, "--status")
  assert res.returncode == 0 and "all claims" in res.stdout
  assert "hopper-sbx" in res.stdout and "halfcheetah-K8 " in res.stdout
  assert not (base / "claims").exists()   # no analysis written


def test_up_to_cuts_every_curve_and_an_interim_reading_says_so(tmp_path):
  """--up_to=N analyzes every curve up to N env steps; --analyze_only of a run under way
  marks the analysis interim (verdict.json, table, figure) unless the cut lies within what
  the run has reached; a bad --up_to is one line."""
  base = tmp_path / "smoke"
  soft_run, hard_run = (a.run for a in claims.plan("hard"))

  def metrics(run_dir, steps, scale):
    os.makedirs(run_dir)
    with open(run_dir / "metrics.csv", "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["env_step", "member", "seed", "eval_return"])
      for t in steps:
        for seed in (100, 101):
          w.writerow([t, seed - 100, seed, scale * t + seed])
  metrics(base / soft_run.name, (100, 200, 300), 10)   # complete (smoke: 300 env steps)
  metrics(base / hard_run.name, (100, 200), 1)         # under way, at 200

  def verdict(out):
    return json.loads((out / "verdict.json").read_text())

  res = _reproduce(tmp_path, "--claim=hard", "--analyze_only", "--up_to=200")
  assert res.returncode == 0, res.stderr
  out = base / "claims" / "hard-up_to_200"
  r = verdict(out)
  assert r["up_to"] == 200 and "interim" not in r   # the cut is within what hard reached
  soft = r["arms"]["soft (alpha=1)"]
  assert soft["env_steps"] == 200
  assert soft["final"] == pytest.approx([(1000 + 2000) / 2 + 100, (1000 + 2000) / 2 + 101])
  assert soft["max"] == pytest.approx([2100, 2101])
  assert "Every curve cut at 200 env steps" in (out / "table.md").read_text()
  assert "Ending before it" not in r["note"]
  assert max(int(row["env_step"]) for row in csv.DictReader(open(out / "curves.csv"))) == 200
  # Without the cut: soft to 300, hard's 200 is a reading of a run under way.
  res = _reproduce(tmp_path, "--claim=hard", "--analyze_only")
  assert res.returncode == 0, res.stderr
  r = verdict(base / "claims" / "hard")
  assert r["arms"]["soft (alpha=1)"]["env_steps"] == 300 and "up_to" not in r
  assert r["interim"] == [dict(run=hard_run.name, reached=200, target=300)]
  assert (f"Interim: run {hard_run.name} is under way, at 200 of 300 env steps"
          in (base / "claims" / "hard" / "table.md").read_text())
  # Each run read from its run directory keeps its whole metrics.csv in the outputs.
  for run in (soft_run, hard_run):
    assert ((base / "claims" / "hard" / run.name / "metrics.csv").read_text()
            == (base / run.name / "metrics.csv").read_text())
  # A cut beyond a run under way: interim, and the run that ends before it is named.
  res = _reproduce(tmp_path, "--claim=hard", "--analyze_only", "--up_to=250")
  assert res.returncode == 0, res.stderr
  r = verdict(base / "claims" / "hard-up_to_250")
  assert [i["run"] for i in r["interim"]] == [hard_run.name]
  assert f"Ending before it: {hard_run.name} at 200." in r["note"]
  assert r["arms"]["soft (alpha=1)"]["env_steps"] == 200
  fig = claim_report.figure("hard", claims.plan("hard"), {
      claims.key(a): (np.array([100, 200]), {100: np.array([1., 2])})
      for a in claims.plan("hard")}, r)
  assert "up to 250 env steps, INTERIM: runs under way" in fig._suptitle.get_text()
  import matplotlib.pyplot as plt
  plt.close(fig)
  # Bad cuts: one line each, nothing written.
  for bad, said in (("0", "--up_to=0: must be a positive number"),
                    ("50", "--up_to=50: arm(s) soft (alpha=1), hard (alpha=0) have no "
                           "evaluation at or before 50 env steps")):
    res = _reproduce(tmp_path, "--claim=hard", "--analyze_only", f"--up_to={bad}")
    assert res.returncode != 0 and said in res.stderr and "Traceback" not in res.stderr, (
        res.stderr)
  assert not (base / "claims" / "hard-up_to_50").exists()


def test_tasks_arms_keep_their_own_horizons():
  """tasks judges each arm against an absolute bar: a modern run still under way (here at
  15k) leaves the paper arm's 25k curve whole; a comparative claim cuts both."""
  steps = np.arange(1, 6) * 5000
  paper = {100 + i: np.array([0., 1000, 2000, 3000, 4000]) + i for i in range(3)}
  modern = {100 + i: np.array([0., 500, 900]) + i for i in range(3)}
  data = {"halfcheetah/paper": (steps, paper), "halfcheetah/modern": (steps[:3], modern)}
  r = claim_analysis.analyze("tasks", claims.plan("tasks", ("halfcheetah",)), data, "cpu")
  assert r["arms"]["halfcheetah/paper"]["env_steps"] == 25000
  assert r["arms"]["halfcheetah/paper"]["final_mean"] == pytest.approx(3001.0)
  assert r["arms"]["halfcheetah/modern"]["env_steps"] == 15000
  # The second line side by side at the shorter horizon (descriptive): paper cut at 15k.
  side = {s["arm"]: s for s in r["side_by_side"]}
  assert {s["env_steps"] for s in side.values()} == {15000}
  assert side["paper"]["final_mean"] == pytest.approx(1001.0)   # (0 + 1000 + 2000) / 3 + 1
  assert side["modern"]["final_mean"] == pytest.approx(467.6667, abs=1e-3)
  table = claim_report.table_markdown(r)
  assert "| halfcheetah paper | 3 | 15,000 | 1,001 ± 1 | 1,000, 1,001, 1,002 |" in table
  # One arm alone: nothing to set beside it.
  one = claim_analysis.analyze("tasks", claims.plan("tasks", ("halfcheetah",))[:1],
                               {"halfcheetah/paper": (steps, paper)}, "cpu")
  assert one["side_by_side"] == [] and "Side by side" not in claim_report.table_markdown(one)
  # A comparative claim whose arms end apart (overlap: synchronous 25k, overlap 15k) sets
  # them side by side at 15k too, so the arms table's 25k is not read against 15k.
  over = claim_analysis.analyze("overlap", claims.plan("overlap", ("halfcheetah",)),
                                {"halfcheetah/synchronous": (steps, paper),
                                 "halfcheetah/overlap": (steps[:3], modern)}, "cpu")
  assert [(s["arm"], s["env_steps"]) for s in over["side_by_side"]] == [
      ("synchronous", 15000), ("overlap", 15000)]
  assert ("| halfcheetah synchronous | 3 | 15,000 | 1,001 ± 1 |"
          in claim_report.table_markdown(over))
  # Arms that end together need no second table; an unnamed panel's rows have no prefix.
  hard = claims.plan("hard")
  same = claim_analysis.analyze("hard", hard, {claims.key(a): (steps, paper) for a in hard},
                                "cpu")
  assert same["side_by_side"] == [] and "Side by side" not in claim_report.table_markdown(same)
  g = claims.plan("grad_steps")
  apart = claim_analysis.analyze("grad_steps", g, {"G=1": (steps, paper), "G=4": (
      steps[:3], modern), "G=16": (steps[:3], modern)}, "cpu")
  assert "| G=1 | 3 | 15,000 | 1,001 ± 1 |" in claim_report.table_markdown(apart)
  arms = claims.plan("parity", ("halfcheetah",))
  data = {"halfcheetah/sac_jax modern": (steps, paper),
          "halfcheetah/stable-baselines-jax": (steps[:3], modern)}
  r = claim_analysis.analyze("parity", arms, data, "cpu")
  assert {a["env_steps"] for a in r["arms"].values()} == {25000, 15000}
  assert {p["env_steps"] for p in r["parts"]} == {15000}


def test_each_comparison_meets_at_its_own_pair_horizon():
  """sac_vs_ddpg on HalfCheetah: SAC and DDPG G = 1 (300k at the cpu budget) meet at their
  end; only the DDPG G = 4 comparison (a 100k run) is cut to 100k. A short arm must not cut
  the long arms' comparison (it used to cut the whole panel)."""
  long, short = np.arange(1, 7) * 50_000, np.arange(1, 3) * 50_000
  rise = np.array([0., 100, 200, 3000, 4000, 5000])   # SAC overtakes late
  flat = np.array([500., 600, 700, 700, 700, 700])
  data = {"halfcheetah/SAC": (long, {100 + i: rise + i for i in range(5)}),
          "halfcheetah/DDPG G=1": (long, {100 + i: flat + i for i in range(5)}),
          "halfcheetah/DDPG G=4": (short, {100 + i: flat[:2] + i for i in range(5)}),
          "halfcheetah/SAC G=4": (short, {100 + i: flat[:2] + 50 + i for i in range(5)})}
  arms = claims.plan("sac_vs_ddpg", ("halfcheetah",))
  assert [a.run.name for a in arms if a.label == "SAC G=4"] == [
      a.run.name for a in claims.plan("grad_steps") if a.label == "G=4"]
  r = claim_analysis.analyze("sac_vs_ddpg", arms, data, "cpu")
  parts = {p["part"]: p for p in r["parts"]}
  g1 = parts["halfcheetah: SAC final > DDPG G=1 final"]
  assert g1["env_steps"] == 300_000 and g1["verdict"] == "holds"
  assert g1["means"] == pytest.approx([4002.0, 702.0])
  g4 = parts["halfcheetah: SAC final > DDPG G=4 final"]
  assert g4["env_steps"] == 100_000 and g4["verdict"] == "does not hold"
  equal = parts["halfcheetah: SAC G=4 final > DDPG G=4 final"]
  assert equal["env_steps"] == 100_000 and equal["verdict"] == "holds"
  assert equal["means"] == pytest.approx([602.0, 552.0])
  assert r["arms"]["halfcheetah/SAC"]["env_steps"] == 300_000
  table = claim_report.table_markdown(r)
  assert "| halfcheetah: SAC final > DDPG G=1 final | 300,000 | holds |" in table


def _settings_data(finals_by_label, task="walker2d"):
  """Curves whose mean of the last 3 evaluations is each seed's given final."""
  labels = list(finals_by_label)
  arms = claims.plan("settings", (task,), [x for x in labels if x != "default"])
  steps = np.arange(1, 7) * 5000
  data = {}
  for a in arms:
    finals = finals_by_label[a.label]
    data[claims.key(a)] = (steps, {100 + i: np.r_[np.zeros(3), np.full(3, f)]
                                   for i, f in enumerate(finals)})
  return arms, data


@pytest.mark.parametrize("variants, verdict", [
    # One variant far above the bar, one below: the search finds a setting.
    (dict(a=[1400, 1500, 1450, 1550, 1500], b=[600, 650, 700, 620, 680]), "holds"),
    # Every variant's interval below the bar: no setting found.
    (dict(a=[600, 650, 700, 620, 680], b=[800, 850, 900, 820, 880]), "does not hold"),
    # A variant around the bar, the other below: cannot tell.
    (dict(a=[600, 1500, 700, 1400, 1100], b=[600, 650, 700, 620, 680]),
     "inconclusive at this budget"),
])
def test_settings_verdict_on_known_answers(variants, verdict):
  """The settings claim: a search that holds when one variant's mean final is above the
  tasks bar by its bootstrap interval, fails when every variant is below it; each variant
  is also compared with the default (a one-sided permutation test)."""
  names = {"a": "tau=0.005", "b": "batch_size=256"}
  finals = {"default": [650, 700, 600, 680, 720],
            **{names[k]: v for k, v in variants.items()}}
  arms, data = _settings_data(finals)
  r = claim_analysis.analyze("settings", arms, data, "cpu")
  assert r["verdict"] == verdict, r
  parts = {p["part"]: p for p in r["parts"]}
  assert list(parts) == [
      "walker2d: default mean final >= 1000", "walker2d: tau=0.005 mean final >= 1000",
      "walker2d: batch_size=256 mean final >= 1000",
      "walker2d: tau=0.005 final > default final",
      "walker2d: batch_size=256 final > default final"]
  # The default's own bar is reported but is not what the search is judged on.
  assert parts["walker2d: default mean final >= 1000"]["verdict"] == "does not hold"
  for label, f in variants.items():
    bar = parts[f"walker2d: {names[label]} mean final >= 1000"]
    np.testing.assert_allclose(bar["mean"], np.mean(f))
    assert bar["ci95"][0] <= np.mean(f) <= bar["ci95"][1]
    cmp = parts[f"walker2d: {names[label]} final > default final"]
    np.testing.assert_allclose(cmp["effect"], np.mean(f) - np.mean(finals["default"]))
  if verdict == "holds":
    assert parts["walker2d: tau=0.005 final > default final"]["verdict"] == "holds"


def test_settings_runs_and_bad_settings():
  """A --setting is one flag after the task flagfile, its run named by it; what the
  budget's protocol sets, unknown names and refused values are one clear line each."""
  arms = claims.plan("settings", ("walker2d",), ("tau=0.005", "hidden_sizes=256,256"))
  assert [(a.label, a.run.name, a.run.flags) for a in arms] == [
      ("default", "walker2d-paper", ()),
      ("tau=0.005", "walker2d-tau0.005", ("--tau=0.005",)),
      ("hidden_sizes=256,256", "walker2d-hidden_sizes256_256", ("--hidden_sizes=256,256",))]
  argv = reproduce.run_flags("cpu", arms[1].run, 100, 5, "/r")
  assert argv[:2] == ["--flagfile=experiments/flags/walker2d.flags", "--tau=0.005"]
  assert "--total_env_steps=300000" in argv
  for bad, says in (("tau", "must be NAME=VALUE"), ("seed=3", "set by the budget"),
                    ("total_env_steps=5", "set by the budget"),
                    ("bogus=1", "'bogus' is not a flag"),
                    ("tau=2", "tau=2: must be in (0, 1]"),
                    ("batch_size=big", "batch_size='big': must be an integer"),
                    ("policy_gradient=magic", "must be one of"),
                    ("auto_alpha=maybe", "must be True or False")):
    with pytest.raises(ValueError) as e:
      claims.plan("settings", ("walker2d",), (bad,))
    assert says in str(e.value) and f"--setting={bad}" in str(e.value), (bad, e.value)
  # Values parse as experiments.run's flags do: a bool flag takes false, lists split.
  assert claims.plan("settings", ("walker2d",), ("auto_alpha=false",))[1].run.flags == (
      "--auto_alpha=false",)
  with pytest.raises(ValueError, match="twice"):
    claims.plan("settings", ("walker2d",), ("tau=0.005", "tau=0.005"))


def test_untested_names_what_a_subset_drops():
  """--tasks dropping a claim's own task and --arms dropping an arm are said; the settings
  claim has no tasks of its own, so searching on another task drops nothing."""
  planned = claims.plan("grad_steps")
  assert reproduce.untested("grad_steps", None, planned, planned) == []
  assert reproduce.untested("sac_vs_ddpg", ("hopper",), planned, planned) == [
      "tasks halfcheetah, walker2d, ant"]
  assert reproduce.untested("grad_steps", ("halfcheetah",), planned, planned[1:]) == [
      "arms G=1"]
  hop = claims.plan("settings", ("hopper",), ("obs_transform=symlog",))
  assert reproduce.untested("settings", ("hopper",), hop, hop) == []
  assert reproduce.untested("settings", ("hopper",), hop, hop[:1]) == [
      "arms hopper obs_transform=symlog"]


def test_settings_command_line_refusals(tmp_path):
  res = _reproduce(tmp_path, "--claim=settings")
  assert res.returncode != 0 and "needs one --setting=NAME=VALUE" in res.stderr
  res = _reproduce(tmp_path, "--claim=hard", "--setting=tau=0.005")
  assert res.returncode != 0 and "only --claim=settings takes --setting" in res.stderr
  res = _reproduce(tmp_path, "--claim=settings", "--setting=tau=-1")
  assert res.returncode != 0 and "--setting=tau=-1: tau=-1: must be" in res.stderr
  assert "Traceback" not in res.stderr and not (tmp_path / "smoke").exists()
