"""The ``purerl`` command's entry point.

A process launched as part of a multi-process job (``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``/
``JAX_COORDINATOR_ADDRESS``, ``srun`` or ``mpirun``) must join it before anything starts a JAX backend, and
importing gymnax already does. So this joins first, then imports and runs the command line.
"""

import sys

from purerl.core.sharding import initialize_distributed


def main(argv: list[str] | None = None) -> int:
    initialize_distributed()
    from purerl.io import cli

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
