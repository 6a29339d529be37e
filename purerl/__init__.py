"""purerl: pure-JAX reinforcement learning, one jitted function per training run, vmapped over seeds."""

from purerl._xla_defaults import apply_safe_xla_defaults

apply_safe_xla_defaults()

from purerl.core.gae import gae  # noqa: E402

__all__ = ["gae"]
__version__ = "0.1.0"
