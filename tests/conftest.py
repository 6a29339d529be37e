"""Importing purerl first applies its safe XLA defaults before any JAX backend starts."""

import purerl  # noqa: F401
