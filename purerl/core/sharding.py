"""Seeds laid along a 1-D device mesh: JAX's own SPMD partitioning, no ``pmap``, no hand-written collectives.

Every device runs its own slice of the seeds (``on_each_device``: ``jax.shard_map`` over the ``"seeds"`` axis):
seeds never interact, so the compiled programs hold no communication between devices at all, and the
results equal a one-device run's seed by seed. A seed count that the device count does not divide is padded
by repeating the last key; ``unpad`` drops the padding from the results.
"""

import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

SEED_AXIS = "seeds"
BY_SEED = PartitionSpec(SEED_AXIS)  # split along the leading (seed) axis
REPLICATED = PartitionSpec()  # the same on every device


def seed_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process) with the axis ``"seeds"``.

    The axis is ``Auto`` (GSPMD propagates shardings through the program), not ``Explicit``: explicit
    sharding types would have to be threaded through every op of a training loop that never needs them."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (SEED_AXIS,), (AxisType.Auto,), devices=devices)


def is_prng_key(x: Any) -> bool:
    """Whether ``x`` is an array of typed PRNG keys (``jax.random.key``), which hold raw data in ``key_data``."""
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def on_each_device(fn: Callable[..., Any], mesh: Mesh, in_specs: Any, out_specs: Any) -> Callable[..., Any]:
    """``fn`` run by every device of ``mesh`` on its own slice of each ``BY_SEED`` argument (``jax.shard_map``).

    Inside, ``fn`` is one device's program: XLA adds no collective. ``fn`` must treat its seeds independently,
    e.g. ``jax.vmap`` over them; its outputs are concatenated along the seed axis (``BY_SEED``)."""
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def padded_count(num_seeds: int, mesh: Mesh) -> int:
    """``num_seeds`` rounded up to a multiple of the mesh's device count."""
    return -(-num_seeds // mesh.size) * mesh.size


def shard_seeds(tree: Any, mesh: Mesh) -> Any:
    """Pads every leaf's leading (seed) axis to ``padded_count`` by repeating its last entry, then places it
    split along that axis over the mesh. Leaves are host data (or arrays on this process's devices), the
    same in every process; each process places only its own devices' slices, so this works across hosts."""
    sharding = NamedSharding(mesh, BY_SEED)

    def place(x: Any) -> jax.Array:
        if is_prng_key(x):
            return jax.random.wrap_key_data(place(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        x = np.asarray(x)
        padding = padded_count(x.shape[0], mesh) - x.shape[0]
        if padding:
            x = np.concatenate([x, np.repeat(x[-1:], padding, axis=0)])
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(place, tree)


def unpad(tree: Any, num_seeds: int) -> Any:
    """The first ``num_seeds`` entries of every leaf: the real seeds, without the padding."""
    return jax.tree.map(lambda x: x[:num_seeds], tree)


def to_host(tree: Any) -> Any:
    """Numpy copies of every leaf. With several processes, each gets the whole global array (gathered)."""
    if jax.process_count() > 1:
        return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree)
    return jax.tree.map(np.asarray, tree)


def any_process(flag: bool) -> bool:
    """True on every process if ``flag`` is true on any (e.g. a stop signal that reached one host only)."""
    if jax.process_count() > 1:
        return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))
    return flag


def barrier(name: str, timeout_minutes: int = 30) -> None:
    """Waits until every process gets here (no-op with one process).

    Uses the coordination service's barrier rather than a collective: CPU (gloo) collectives give up after
    30 s, and compiling on one host can take that much longer than on another."""
    if jax.process_count() > 1:
        from jax._src import distributed  # the coordination client: no public accessor in jax 0.10/0.11

        distributed.global_state.client.wait_at_barrier(f"purerl:{name}", timeout_minutes * 60 * 1000)


def initialize_distributed() -> bool:
    """Joins a multi-process run when the environment describes one; returns whether it did.

    Plain environment variables: ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0), ``JAX_NUM_PROCESSES``
    and ``JAX_PROCESS_ID``. Under SLURM (``srun``) or Open MPI (``mpirun``) with more than one task, JAX
    reads all three from the launcher. Must run before anything touches a JAX device."""
    explicit = "JAX_NUM_PROCESSES" in os.environ
    launched = any(int(os.environ.get(name, "1")) > 1 for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"))
    if not (explicit or launched):
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts talk over TCP
    if explicit:
        jax.distributed.initialize(
            coordinator_address=os.environ.get("JAX_COORDINATOR_ADDRESS"),
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    else:
        jax.distributed.initialize()
    return True


def is_main_process() -> bool:
    """Process 0 writes results and prints; every process computes (and gathers) them."""
    return jax.process_index() == 0
