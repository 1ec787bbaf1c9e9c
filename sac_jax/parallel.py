"""Members over devices and processes: a 1-D mesh over the member axis.

Members are independent runs (WORKSPACE.md), so spreading them over devices is embarrassingly
parallel: every leaf of the stacked TrainState, and every per-step host input with a
leading member axis M (observations, the pending transition, evaluation observations), is
placed with `NamedSharding(mesh, P("members"))`. `jax.jit` follows the shardings of its
inputs, so the one jitted, vmapped step then runs M / D members on each of the D devices
with no communication between them (nothing is reduced over the member axis).

The member count must be a multiple of the device count; `check_divisible` refuses
anything else with a message naming both numbers and the counts that would work (no
silent padding: a padded member would cost a device slot and appear nowhere).

Several processes (`initialize_distributed`, i.e. `jax.distributed.initialize`): the mesh
spans every process's devices, ordered by process, so process p owns a contiguous block of
members. `Placement` is what the host loop needs to know about that: which members are
this process's (it steps only their envs), how to turn its local per-member data into the
global arrays the step takes (`put`), and how to read its own members back out of a
global array (`local`). With one process and one device both are the identity.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sac_jax import settings

AXIS = "members"


def check_distributed_flags(coordinator_address: str | None, num_processes: int | None,
                            process_id: int | None) -> None:
  """Raises ValueError naming a bad value (no connection made); the rule is the settings'
  (sac_jax.settings)."""
  settings.validate(dict(coordinator_address=coordinator_address,
                         num_processes=num_processes, process_id=process_id))


def initialize_distributed(coordinator_address: str | None, num_processes: int | None = None,
                           process_id: int | None = None) -> None:
  """`jax.distributed.initialize` (before any JAX computation); no-op without an address.

  "auto" lets JAX detect the cluster (SLURM, Open MPI, ...). On CPU the cross-process
  collectives (barriers, allgathers of evaluation results) use gloo.
  """
  check_distributed_flags(coordinator_address, num_processes, process_id)
  if not coordinator_address:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if coordinator_address == "auto":
    jax.distributed.initialize()
  else:
    jax.distributed.initialize(coordinator_address, num_processes=num_processes,
                               process_id=process_id)


def member_devices(num_devices: int = 0) -> list[jax.Device]:
  """The devices members go on: with one process the first `num_devices` local devices
  (0: all of them); with several, every process's devices ordered by process (num_devices
  must then be 0 or the global count)."""
  if jax.process_count() > 1:
    devs = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    if num_devices not in (0, len(devs)):
      raise ValueError(f"num_devices={num_devices}: with {jax.process_count()} processes "
                       f"the members go on all {len(devs)} devices of all processes "
                       "(use 0)")
    return devs
  devs = jax.local_devices()
  if num_devices < 0 or num_devices > len(devs):
    raise ValueError(f"num_devices={num_devices}: this host has {len(devs)} "
                     f"{devs[0].platform.upper()} device(s) (0 means all of them)")
  return devs[:num_devices] if num_devices else devs



def check_divisible(num_members: int, num_devices: int) -> None:
  """Raises ValueError unless the members split evenly over the devices."""
  if num_members % num_devices:
    msg = (f"{num_members} member(s) cannot be spread evenly over {num_devices} devices: "
           f"make the member count (settings x seeds) a multiple of {num_devices}")
    if jax.process_count() > 1:
      raise ValueError(msg + f" (with {jax.process_count()} processes the members go on "
                       "every device of every process)")
    fits = [d for d in range(1, num_devices + 1) if num_members % d == 0]
    raise ValueError(msg + f", or use --num_devices={max(fits)} (device counts that divide "
                     f"{num_members}: {', '.join(map(str, fits))})")


def member_mesh(num_members: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named "members" over `devices` (default: all local devices)."""
  devices = list(devices) if devices is not None else member_devices()
  check_divisible(num_members, len(devices))
  return Mesh(np.array(devices), (AXIS,))


def member_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (member) axis split over the mesh; every other axis whole on each device."""
  return NamedSharding(mesh, P(AXIS))


def shard_members(tree: Any, mesh: Mesh) -> Any:
  """Places every leaf of `tree` (leading axis M) with the member axis over `mesh`."""
  return jax.device_put(tree, member_sharding(mesh))


def devices_of(x: jax.Array) -> set[jax.Device]:
  """The devices holding shards of `x`."""
  return {s.device for s in x.addressable_shards}


class Placement:
  """Where M members live, seen from this process.

  `members` is the contiguous range of member indices this process owns (all of them with
  one process). `put(tree)` takes leaves with a leading axis over those members and returns
  global arrays over all M (sharded), `local(tree)` the reverse, as numpy. `sharding` is
  None when everything runs on one device.
  """

  def __init__(self, num_members: int, devices: Sequence[jax.Device]):
    self.num_members = num_members
    self.multi_process = jax.process_count() > 1
    self.sharding = None
    self.members = range(num_members)
    if len(devices) > 1 or self.multi_process:
      self.sharding = member_sharding(member_mesh(num_members, devices))
      index = self.sharding.addressable_devices_indices_map((num_members,))
      starts = sorted(ix[0].indices(num_members)[:2] for ix in index.values())
      lo, hi = starts[0][0], starts[-1][1]
      if any(a[1] != b[0] for a, b in zip(starts, starts[1:])):
        raise ValueError(f"process {jax.process_index()}'s members are not contiguous: "
                         f"{starts}")
      self.members = range(lo, hi)

  @property
  def num_local(self) -> int:
    return len(self.members)

  @property
  def is_primary(self) -> bool:
    return jax.process_index() == 0

  def put(self, tree: Any) -> Any:
    if self.sharding is None:
      return tree
    if not self.multi_process:
      return jax.device_put(tree, self.sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            self.sharding, np.asarray(x), (self.num_members,) + np.shape(x)[1:]), tree)

  def local(self, tree: Any) -> Any:
    if not self.multi_process:
      return jax.tree.map(np.asarray, tree)

    def one(x):
      shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
      return np.concatenate([np.asarray(s.data) for s in shards])
    return jax.tree.map(one, tree)

  def select(self, values: Sequence) -> list:
    """This process's entries of a per-member list."""
    return [values[i] for i in self.members]


def allgather(x: np.ndarray) -> np.ndarray:
  """Concatenates every process's `x` along axis 0, in process order (a barrier too)."""
  if jax.process_count() == 1:
    return np.asarray(x)
  from jax.experimental import multihost_utils
  out = multihost_utils.process_allgather(np.asarray(x), tiled=True)
  return np.asarray(out)


def barrier(name: str) -> None:
  """Waits until every process gets here (no-op with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)
