"""Test-wide setup: a persistent XLA compilation cache shared by all test processes.

Most of a tiny test's time is compiling the jitted step; with the cache every later
compile of the same program (other tests, pytest-xdist workers, CLI subprocesses, which
inherit the environment variables) is a disk read.

XLA's CPU backend compiles at LLVM optimization level 1 here (`XLA_FLAGS`, inherited by the
CLI subprocesses too): a test's time is mostly compiling, level 1 compiles the jitted step
about 25% and a random draw about 10x faster than the default level 2, and the step ran as
fast side by side (paper configuration, M = 2, 128 x 128: its time is in the matrix
products, library kernels either way). Results differ from level 2's by float32 rounding
(at most 3e-8 after 40 updates, measured), inside every test's tolerance; the tests that compare runs
bitwise compare runs made here, at the same level.
"""

import os
import pathlib

_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax_cache"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
OPT_LEVEL = "--xla_backend_optimization_level=1"
if OPT_LEVEL.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {OPT_LEVEL}".strip()

import jax  # noqa: E402  (after the environment is set)

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# The longest tests (minutes each on 2 cores) start first; with `--dist worksteal` (the
# README's command) the other worker takes the short ones meanwhile and steals the rest, so
# the two workers finish together instead of one waiting on a long test started last.
LONGEST = ("test_reproduce.py::test_smoke_budget_of_the_halfcheetah_claims",
           "test_learning.py::test_inverted_pendulum",
           "test_learning.py::test_pendulum",
           "test_reproduce.py::test_smoke_budget_of_the_per_task_claims",
           "test_distributed.py::test_two_processes_equal_one_process",
           "test_ddpg.py::test_ddpg_learns_pendulum",
           "test_distributed.py::test_sigterm_to_one_process",
           "test_overlap.py::test_cli_overlap_flag_and_resume_without_it",
           "test_sweep.py::test_grid_of_shape_changing_settings")


def pytest_collection_modifyitems(items):
  rank = lambda item: next((i for i, name in enumerate(LONGEST) if name in item.nodeid),
                           len(LONGEST))
  items.sort(key=rank)  # stable: the rest keep their order
