"""Orbax checkpoints of a run: the whole stacked TrainState pytree plus host counters.

A checkpoint is one orbax step directory `<run_dir>/checkpoints/<env_step>` holding two
items: `tree` (any pytree of arrays: the TrainState with params, optimizer states, replay
buffers, PRNG keys and counters, plus the transition not yet stored) and `host` (a JSON dict:
evaluation counter, wall time, ...). Orbax writes to a temporary directory and renames it
when complete, so a kill at any moment leaves either the old or the new checkpoint, never a
torn one; the temporary directory such a kill leaves behind (a whole checkpoint's worth of
disk) is removed when the manager is next created (`cleanup_tmp_directories`). Saves are
synchronous: the step function donates its state, so the arrays must be written before the
next step runs.

A checkpoint that cannot be read (a damaged file: a disk fault, a copy cut short) does not
make the run unresumable: `restore_latest` warns, moves it aside to
`<directory>.corrupt/<step>` and falls back to the one before. A readable checkpoint whose
tree has another structure than the one asked for (another version of sac_jax wrote it), or
arrays of other shapes (other layer sizes, replay capacity or member count), is not
damaged: `restore_latest` raises `IncompatibleCheckpoint` and moves nothing.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from sac_jax import parallel

# Orbax logs every save at INFO through absl; keep the run's stdout for progress lines.
logging.getLogger("absl").setLevel(logging.WARNING)


class Checkpointer:
  """Saves and restores (tree, host dict) pairs by env step; keeps the newest `max_to_keep`
  and, with `keep_every`, every one whose step is a multiple of it.

  `read_only`: another run's checkpoints (a branch's source, perhaps still training):
  nothing in the directory is created, removed or cleaned up (not even the temporary
  directory of a save in progress), and `save` is refused.
  """

  def __init__(self, directory: str, max_to_keep: int = 2, read_only: bool = False,
               keep_every: int = 0):
    self.directory = os.path.abspath(directory)
    self.max_to_keep = max_to_keep
    self.keep_every = keep_every
    self.read_only = read_only
    self._open()

  def _open(self) -> None:
    options = ocp.CheckpointManagerOptions(max_to_keep=self.max_to_keep,
                                           keep_period=self.keep_every or None,
                                           create=not self.read_only,
                                           read_only=self.read_only,
                                           enable_async_checkpointing=False,
                                           cleanup_tmp_directories=not self.read_only)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("tree", "host"))
    # The cleanup runs in a background thread that orbax awaits only in save(); wait for
    # it here so the directory is clean before anything lists or reads it.
    getattr(self._manager, "_maybe_await_cleanup_tmp_directory", lambda: None)()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, tree: Any, host: dict) -> None:
    if self.read_only:
      raise ValueError(f"{self.directory} was opened read-only (another run's checkpoints)")
    self._manager.save(int(step), args=ocp.args.Composite(
        tree=ocp.args.StandardSave(tree), host=ocp.args.JsonSave(host)), force=True)
    self._manager.wait_until_finished()

  def restore(self, step: int, like: Any) -> tuple[Any, dict]:
    """Restores step `step`; `like` is a pytree of arrays (or ShapeDtypeStructs) to match."""
    abstract = jax.tree.map(_abstract, like)
    out = self._manager.restore(int(step), args=ocp.args.Composite(
        tree=ocp.args.StandardRestore(abstract), host=ocp.args.JsonRestore()))
    return out.tree, dict(out.host)

  def restore_host(self, step: int) -> dict:
    """Only the host dict of step `step` (no arrays read)."""
    out = self._manager.restore(int(step), args=ocp.args.Composite(
        host=ocp.args.JsonRestore()))
    return dict(out.host)

  def restore_latest(self, like: Any) -> tuple[int, Any, dict] | None:
    """The newest checkpoint that can be read, as (step, tree, host); None if there is none.

    A checkpoint that fails to restore is warned about and moved aside
    (`<directory>.corrupt/<step>`), then the one before is tried. With several processes
    they agree (an allgather of each one's success) before anything is moved.
    """
    while True:
      step = self.latest_step()
      if step is None:
        return None
      # Written by another version (e.g. before the learning rates left the optimizer
      # states for HParams, when each opt state held a `hyperparams` entry): refused in
      # one line, not set aside as damaged.
      self.check_structure(step, like)
      try:
        tree, host = self.restore(step, like)
        error = None
      except Exception as e:  # noqa: BLE001 - any unreadable checkpoint
        tree, host, error = None, None, e
      failed = parallel.allgather(np.array([error is not None], np.int32))
      if not failed.any():
        return int(step), tree, host
      self.quarantine(step, error)

  def stored_shapes(self, step: int) -> dict[tuple[str, ...], tuple[int, ...]]:
    """The shape of every array in step `step`'s tree, by path (names as `_paths`), from
    orbax's metadata only; {} if the metadata cannot be read."""
    meta = self._metadata(step)
    return {} if meta is None else _shapes(meta)

  def _metadata(self, step: int) -> Any:
    """Step `step`'s tree metadata (orbax's), or None if it cannot be read (damaged: the
    restore reports it)."""
    path = os.path.join(self.directory, str(int(step)), "tree")
    try:
      meta = ocp.PyTreeCheckpointHandler().metadata(epath.Path(path))
    except Exception:  # noqa: BLE001 - damaged: restore_latest decides
      return None
    return getattr(meta, "tree", meta)

  def check_structure(self, step: int, like: Any) -> None:
    """Raises IncompatibleCheckpoint if step `step`'s tree has other entries than `like`,
    or arrays of other shapes.

    Only the metadata is read; unreadable metadata is left to the restore (a damaged
    checkpoint is set aside there)."""
    meta = self._metadata(step)
    if meta is None:
      return
    stored = _paths(meta)
    expected = _paths(like)
    where = os.path.join(self.directory, str(step))
    if not stored:
      return
    if stored != expected:
      show = lambda paths: ", ".join(".".join(p) for p in sorted(paths)[:2]) + (
          ", ..." if len(paths) > 2 else "")
      diff = "; ".join(part for part in (
          f"it holds {show(stored - expected)}" if stored - expected else "",
          f"it lacks {show(expected - stored)}" if expected - stored else "") if part)
      raise IncompatibleCheckpoint(
          f"checkpoint {where} was written by an older (or other) version of sac_jax: its "
          f"training state does not match this version's ({diff}); resume the run with "
          "the version that wrote it, or start a new run_dir")
    # The same entries with other shapes: other settings (layer sizes, replay capacity,
    # member count), not damage: refused, never set aside as unreadable.
    have, want = _shapes(meta), _shapes(like)
    other = sorted(p for p in have if p in want and have[p] != want[p])
    if other:
      shown = "; ".join(f"{'.'.join(p)} {have[p]} stored, {want[p]} here"
                        for p in other[:2]) + ("; ..." if len(other) > 2 else "")
      raise IncompatibleCheckpoint(
          f"checkpoint {where} holds arrays of other shapes than this run's ({shown}): "
          "it was written with other shape-changing settings (layer sizes, replay "
          "capacity, members); resume it with the settings that wrote it, or start a new "
          "run_dir")

  def quarantine(self, step: int, error: BaseException | None) -> None:
    """Moves checkpoint `step` out of the manager's directory (process 0), with a warning."""
    aside = self.directory + ".corrupt"
    why = f"{type(error).__name__}: {str(error)[:300]}" if error is not None else (
        "another process could not read it")
    warnings.warn(f"checkpoint {os.path.join(self.directory, str(step))} cannot be "
                  f"restored ({why}); moved to {aside}/ and falling back to the previous "
                  "checkpoint", CheckpointWarning, stacklevel=3)
    self._manager.close()
    if jax.process_index() == 0:
      os.makedirs(aside, exist_ok=True)
      target = os.path.join(aside, str(step))
      if os.path.exists(target):
        shutil.rmtree(target)
      os.replace(os.path.join(self.directory, str(step)), target)
    parallel.barrier(f"sac_jax.checkpoint.quarantine.{step}")
    self._open()

  def close(self) -> None:
    self._manager.close()


class CheckpointWarning(UserWarning):
  """A checkpoint could not be read and was set aside."""


class IncompatibleCheckpoint(ValueError):
  """A readable checkpoint of another structure: another version of sac_jax wrote it."""


def _paths(tree: Any) -> set[tuple[str, ...]]:
  """The leaves' paths as names (dict keys, NamedTuple fields and indices alike: orbax's
  metadata turns NamedTuples into dicts)."""
  return {_name_path(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _name_path(path) -> tuple[str, ...]:
  def name(k):
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        return str(getattr(k, attr))
    return str(k)
  return tuple(name(k) for k in path)


def _shapes(tree: Any) -> dict[tuple[str, ...], tuple[int, ...]]:
  """The shape of every leaf that has one (arrays, ShapeDtypeStructs, orbax's array
  metadata), by the leaf's path as `_paths` names it."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  out = {}
  for path, leaf in flat:
    shape = getattr(leaf, "shape", None)
    if shape is not None:
      out[_name_path(path)] = tuple(int(n) for n in shape)
  return out


def _abstract(x):
  sharding = getattr(x, "sharding", None)
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
