"""Members over devices: a 1-D mesh over the member axis and the shardings that go with it.

Members are independent runs (DESIGN.md 2), so spreading them over devices is embarrassingly
parallel: every leaf of the stacked TrainState, and every per-step host input with a
leading member axis M (observations, the pending transition, evaluation observations), is
placed with `NamedSharding(mesh, P("members"))`. `jax.jit` follows the shardings of its
inputs, so the one jitted, vmapped step then runs M / D members on each of the D devices
with no communication between them (nothing is reduced over the member axis).

The member count must be a multiple of the device count; `check_divisible` refuses
anything else with a message naming both numbers and the counts that would work (no
silent padding: a padded member would cost a device slot and appear nowhere).

Single host only: with several processes (`jax.distributed.initialize`) the host loop
would have to step only its own members' envs and feed process-local data; that is not
implemented (see README, "Several devices").
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "members"


def local_devices(num_devices: int = 0) -> list[jax.Device]:
  """The first `num_devices` local devices (0: all of them)."""
  devs = jax.local_devices()
  if num_devices < 0 or num_devices > len(devs):
    raise ValueError(f"num_devices={num_devices}: this host has {len(devs)} "
                     f"{devs[0].platform.upper()} device(s) (0 means all of them)")
  return devs[:num_devices] if num_devices else devs


def check_divisible(num_members: int, num_devices: int) -> None:
  """Raises ValueError unless the members split evenly over the devices."""
  if num_members % num_devices:
    fits = [d for d in range(1, num_devices + 1) if num_members % d == 0]
    raise ValueError(
        f"{num_members} member(s) cannot be spread evenly over {num_devices} devices: "
        f"make the member count (settings x seeds) a multiple of {num_devices}, or use "
        f"--num_devices={max(fits)} (device counts that divide {num_members}: "
        f"{', '.join(map(str, fits))})")


def member_mesh(num_members: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named "members" over `devices` (default: all local devices)."""
  devices = list(devices) if devices is not None else local_devices()
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
