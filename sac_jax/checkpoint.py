"""Orbax checkpoints of a run: the whole stacked TrainState pytree plus host counters.

A checkpoint is one orbax step directory `<run_dir>/checkpoints/<env_step>` holding two
items: `tree` (any pytree of arrays: the TrainState with params, optimizer states, replay
buffers, PRNG keys and counters, plus the transition not yet stored) and `host` (a JSON dict:
evaluation counter, wall time, ...). Orbax writes to a temporary directory and renames it
when complete, so a kill at any moment leaves either the old or the new checkpoint, never a
torn one. Saves are synchronous: the step function donates its state, so the arrays must be
written before the next step runs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

# Orbax logs every save at INFO through absl; keep the run's stdout for progress lines.
logging.getLogger("absl").setLevel(logging.WARNING)


class Checkpointer:
  """Saves and restores (tree, host dict) pairs by env step; keeps the newest `max_to_keep`."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("tree", "host"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, tree: Any, host: dict) -> None:
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

  def close(self) -> None:
    self._manager.close()


def _abstract(x):
  sharding = getattr(x, "sharding", None)
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
