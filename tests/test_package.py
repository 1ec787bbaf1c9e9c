"""The library as an installed package: a wheel built from this checkout, installed into a
fresh venv, imported from a directory outside the repository.

The fresh venv gets the wheel with --no-deps; its dependencies (jax, flax, ...) come from
the test venv's site-packages through a path file, which adds that directory to sys.path
without running the .pth files in it (so the editable install of this checkout, if any,
is not visible there). Building and installing takes about 10-20 s.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
  # Build from a copy of what the package is made of, so a stale build/ directory in the
  # checkout (pip builds in-tree) cannot leak old files into the wheel.
  src = tmp_path_factory.mktemp("src")
  for name in ("setup.cfg", "pyproject.toml", "README.md"):
    shutil.copy(REPO / name, src / name)
  shutil.copytree(REPO / "sac_jax", src / "sac_jax",
                  ignore=shutil.ignore_patterns("__pycache__"))
  out = tmp_path_factory.mktemp("wheel")
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "-q", "-w", str(out), str(src)], check=True, cwd=out)
  (path,) = out.glob("sac_jax-*.whl")
  return path


def test_wheel_ships_the_library_and_nothing_named_experiments(wheel):
  names = zipfile.ZipFile(wheel).namelist()
  top = {n.split("/")[0] for n in names}
  assert "experiments" not in top, sorted(top)
  modules = {n.split("/")[1] for n in names if n.startswith("sac_jax/")}
  expected = {p.name for p in (REPO / "sac_jax").glob("*.py")}
  assert "__init__.py" in expected
  assert expected <= modules, expected - modules


def test_installed_wheel_imports_from_outside_the_tree(wheel, tmp_path):
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
  py = venv / "bin" / "python"
  site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                         "['purelib'])"], check=True, capture_output=True, text=True
                        ).stdout.strip()
  # Install with this venv's pip into the fresh venv (pip --python), no dependencies.
  subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                  "-q", str(wheel)], check=True)
  deps = sysconfig.get_paths()["purelib"]
  pathlib.Path(site, "test_deps.pth").write_text(deps + "\n")
  outside = tmp_path / "elsewhere"
  outside.mkdir()
  code = (
      "import sac_jax, numpy as np, importlib.util\n"
      "print(sac_jax.__file__)\n"
      "print(sac_jax.__version__)\n"
      "print(importlib.util.find_spec('experiments'))\n"
      "lp = sac_jax.log_prob(np.zeros((2, 3), np.float32), np.zeros((2, 3, 1), np.float32),"
      " np.zeros((2, 3, 1), np.float32), np.zeros((2, 1), np.float32))\n"
      "print(lp.shape)\n"
      "cfg = sac_jax.SACConfig(hidden_sizes=(8,), batch_size=4, buffer_size=16)\n"
      "print(type(sac_jax.Agent(cfg, 3, 1)).__name__, sac_jax.LoopConfig('Pendulum-v1').env_id,"
      " callable(sac_jax.train), sac_jax.HParams.__name__)\n")
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
  res = subprocess.run([str(py), "-c", code], cwd=outside, capture_output=True, text=True,
                       env=env)
  assert res.returncode == 0, res.stderr
  file, version, spec, shape, names = res.stdout.strip().splitlines()
  assert pathlib.Path(file).is_relative_to(site), file
  assert not pathlib.Path(file).is_relative_to(REPO), file
  assert version == _version_in_package()
  assert spec == "None", "an `experiments` package is importable outside the tree"
  assert shape == "(2,)"
  assert names == "Agent Pendulum-v1 True HParams"


def _version_in_package() -> str:
  ns: dict = {}
  src = (REPO / "sac_jax" / "__init__.py").read_text()
  line = next(l for l in src.splitlines() if l.startswith("__version__"))
  exec(line.split("#")[0], ns)
  return ns["__version__"]


def test_import_is_lazy_and_names_resolve():
  """`import sac_jax` alone does not import jax-heavy modules; each public name resolves
  to the object of its module; an unknown name is an AttributeError."""
  code = ("import sys, sac_jax\n"
          "assert 'sac_jax.loop' not in sys.modules and 'sac_jax.agent' not in sys.modules\n"
          "from sac_jax import gmm, agent, loop\n"
          "assert sac_jax.log_prob is gmm.log_prob and sac_jax.sample is gmm.sample\n"
          "assert sac_jax.squashed_log_prob is gmm.squashed_log_prob\n"
          "assert sac_jax.SACConfig is agent.SACConfig and sac_jax.Agent is agent.Agent\n"
          "assert sac_jax.HParams is agent.HParams\n"
          "assert sac_jax.train is loop.train and sac_jax.LoopConfig is loop.LoopConfig\n"
          "try:\n  sac_jax.nope\nexcept AttributeError as e:\n  assert 'nope' in str(e)\n"
          "else:\n  raise SystemExit('no AttributeError')\n")
  res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
  assert res.returncode == 0, res.stderr
