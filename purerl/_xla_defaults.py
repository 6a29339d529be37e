"""XLA settings purerl applies before JAX starts its backend.

On a 2-core CPU, jax 0.10.x can deadlock in ``jit(vmap(train))`` over 3-4 seeds (the call never returns
and the process sits idle). The cause is narrowed to XLA:CPU's concurrency-optimised scheduler: turning it
off cures the hang at the same speed (see README, "Known hazards"). We turn it off unless the user set the
flag themselves. XLA reads ``XLA_FLAGS`` when the first backend is created, so this must run before any
JAX computation; importing ``purerl`` first is enough.
"""

import os

SAFE_CPU_FLAGS = ("--xla_cpu_enable_concurrency_optimized_scheduler=false",)


def apply_safe_xla_defaults() -> None:
    """Append each safe flag to ``XLA_FLAGS`` unless the user already chose a value for it."""
    flags = os.environ.get("XLA_FLAGS", "")
    for flag in SAFE_CPU_FLAGS:
        name = flag.split("=")[0]
        if name not in flags:
            flags = f"{flags} {flag}".strip()
    os.environ["XLA_FLAGS"] = flags
