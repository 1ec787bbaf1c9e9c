"""Helpers shared by the tests that drive the real command-line entry points."""

import csv
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(module, *args, timeout=300):
  """Runs `python -m module args...` from the repository root; returns the CompletedProcess."""
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout)


def read_rows(run_dir):
  """The rows of a run directory's metrics.csv as dicts ([] before the first is written)."""
  path = os.path.join(run_dir, "metrics.csv")
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def cpu_devices_env(count, **extra):
  """This process's environment with `count` host CPU devices for a subprocess, keeping the
  XLA_FLAGS it already has (tests/conftest.py sets the compile level there)."""
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}"
  return dict(os.environ, XLA_FLAGS=flags.strip(), **extra)
