"""Seeds laid along a 1-D device mesh: JAX's own SPMD partitioning, no ``pmap``, no hand-written collectives.

``jax.jit(jax.vmap(train))`` called on keys sharded along the mesh axis runs each device's slice of seeds on
that device. Seeds never interact, so XLA adds no communication to the training itself (the in-jit progress
report gathers one float per seed to the host now and then). A seed count that the device count does not
divide is padded by repeating the last key; ``unpad`` drops the padding from the results.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

SEED_AXIS = "seeds"


def seed_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process) with the axis ``"seeds"``.

    The axis is ``Auto`` (GSPMD propagates shardings through the program), not ``Explicit``: explicit
    sharding types would have to be threaded through every op of a training loop that never needs them."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (SEED_AXIS,), (AxisType.Auto,), devices=devices)


def padded_count(num_seeds: int, mesh: Mesh) -> int:
    """``num_seeds`` rounded up to a multiple of the mesh's device count."""
    return -(-num_seeds // mesh.size) * mesh.size


def shard_seeds(tree: Any, mesh: Mesh) -> Any:
    """Pads every leaf's leading (seed) axis to ``padded_count`` by repeating its last entry, then places it
    split along that axis over the mesh."""
    sharding = NamedSharding(mesh, PartitionSpec(SEED_AXIS))

    def place(x: jax.Array) -> jax.Array:
        padding = padded_count(x.shape[0], mesh) - x.shape[0]
        if padding:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], padding, axis=0)])
        return jax.device_put(x, sharding)

    return jax.tree.map(place, tree)


def unpad(tree: Any, num_seeds: int) -> Any:
    """The first ``num_seeds`` entries of every leaf: the real seeds, without the padding."""
    return jax.tree.map(lambda x: x[:num_seeds], tree)
