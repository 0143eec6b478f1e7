"""Devices: the data-parallel mesh, replication of host arrays onto it, and joining a multi-process run.

A `Mesh` over all devices with one axis "data": params are replicated and every batch (real crops,
latents) is constrained to be sharded along "data", so XLA splits the convolutions by sample and
all-reduces gradients and BatchNorm statistics: the losses equal the single-device ones for the same
global batch. Multi-process (several hosts, or one process per GPU): the command line calls
`initialize_distributed` before anything else, and the mesh spans the devices of all processes. Only
process 0 logs, writes images and the metadata; orbax stores each replicated array once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from porejax.errors import PorejaxError


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis ("data") mesh over `devices` (default: all devices of all processes)."""
    return Mesh(np.asarray(jax.devices() if devices is None else list(devices)), ("data",))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Host arrays -> global arrays replicated on every device of the mesh (works across hosts)."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda idx: np.asarray(a)[idx]), tree
    )


def initialize_distributed() -> bool:
    """Join a multi-process run when the environment describes one; True if this process is part of one.

    Recognised: JAX_COORDINATOR_ADDRESS (host:port of process 0) + JAX_NUM_PROCESSES + JAX_PROCESS_ID
    (any launcher, e.g. by hand), or a Slurm / Open MPI job with more than one task (jax.distributed
    reads those itself). Process-wide: must run before the first JAX computation, so only the command line
    calls it (`porejax train`, first thing). On CPU the processes exchange data through gloo (JAX's
    default CPU collectives).
    """
    env = os.environ
    if jax.distributed.is_initialized():
        return True
    if "JAX_COORDINATOR_ADDRESS" in env:
        missing = [name for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if name not in env]
        if missing:
            raise PorejaxError(
                f"JAX_COORDINATOR_ADDRESS is set but {' and '.join(missing)} not: set all three "
                "(README, 'Running on a cluster')"
            )
        jax.distributed.initialize(
            env["JAX_COORDINATOR_ADDRESS"], int(env["JAX_NUM_PROCESSES"]), int(env["JAX_PROCESS_ID"])
        )
        return True
    if int(env.get("SLURM_NTASKS", 1)) > 1 or int(env.get("OMPI_COMM_WORLD_SIZE", 1)) > 1:
        jax.distributed.initialize()
        return True
    return False
