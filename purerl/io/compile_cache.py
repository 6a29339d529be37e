"""Where the ``purerl`` command keeps compiled programs between runs (JAX's persistent compilation cache).

XLA's compile is most of a short run's wall time (8-16 s on a CPU for PPO, more for the LM). With the cache,
a second run of the same program (same config shapes, seed count, devices, jax version) loads it from disk.
The directory, by precedence:

1. ``--compile-cache DIR`` (or ``--compile-cache off``);
2. the environment variable ``PURERL_COMPILE_CACHE`` (a directory, or ``off``);
3. JAX's own ``JAX_COMPILATION_CACHE_DIR``, if set;
4. ``$XDG_CACHE_HOME/purerl/jax`` (``~/.cache/purerl/jax`` when ``XDG_CACHE_HOME`` is unset).

Every compile is kept, however quick (``jax_persistent_cache_min_compile_time_secs`` 0 unless
``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` is set): flax's ``init`` and optax's run op by op, dozens of
sub-second programs that add up to seconds (LM SFT: 4.1 s of XLA compiles, 0.2 s on a second run).

In the default directory, which only purerl writes, JAX evicts the least recently used entries beyond
``DEFAULT_MAX_BYTES`` (``jax_compilation_cache_max_size``, unless ``JAX_COMPILATION_CACHE_MAX_SIZE`` is set;
JAX needs ``filelock`` for it). A directory you choose is left as JAX's default leaves it, unbounded: a
bounded writer and an unbounded one (e.g. your own JAX scripts) must not share a directory, since the
unbounded one does not record the access times the bounded one evicts by. Only programs without host
callbacks can be cached (JAX refuses to store them), which is why the training chunks report progress
from the host between chunks, not from inside.
"""

import importlib.util
import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

from purerl.io.checkpoints import check_writable

ENV_VAR = "PURERL_COMPILE_CACHE"
OFF = "off"
DEFAULT_MAX_BYTES = 4 * 2**30


def default_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "purerl" / "jax"


def cache_directory(flag: str | None) -> tuple[Path | None, str]:
    """The cache directory from ``--compile-cache`` (``flag``) and the environment (None when it is off), and
    where that choice came from (for errors)."""
    sources = (("--compile-cache", flag), (ENV_VAR, os.environ.get(ENV_VAR)))
    sources += (("JAX_COMPILATION_CACHE_DIR", os.environ.get("JAX_COMPILATION_CACHE_DIR") or None),)
    source, choice = next(((name, value) for name, value in sources if value is not None), (None, None))
    if choice is None:
        return default_directory(), "the compile cache"
    if choice.strip().lower() == OFF:
        return None, source
    if not choice.strip():
        raise ValueError(f"{source} is empty; give a directory or {OFF!r}")
    return Path(choice).expanduser(), source


def configure_compile_cache(flag: str | None) -> Path | None:
    """Turns JAX's persistent compilation cache on at ``cache_directory(flag)`` (or off), before anything
    compiles; returns the directory. Raises ``ValueError`` (one line) if it is not a directory purerl can write."""
    directory, source = cache_directory(flag)
    compilation_cache.reset_cache()  # a compile at import (gymnax's) may have opened JAX's default already
    if directory is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    check_writable(
        directory, source, f"; give another with --compile-cache DIR or turn it off with --compile-cache {OFF}"
    )
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        # Keep the quick compiles too: the LM's parameter and optimiser initialisation runs op by op, dozens of
        # programs under JAX's default 1 s threshold that add up to seconds, compiled again in every run.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
        bounded = directory == default_directory() and importlib.util.find_spec("filelock") is not None
        jax.config.update("jax_compilation_cache_max_size", DEFAULT_MAX_BYTES if bounded else -1)
    return directory
