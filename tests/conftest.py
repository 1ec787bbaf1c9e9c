"""Test-wide setup: a persistent XLA compilation cache shared by all test processes.

Most of a tiny test's time is compiling the jitted step; with the cache every later
compile of the same program (other tests, pytest-xdist workers, CLI subprocesses, which
inherit the environment variables) is a disk read.
"""

import os
import pathlib

_CACHE = pathlib.Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax_cache"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402  (after the environment is set)

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
