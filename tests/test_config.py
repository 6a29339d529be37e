"""The config base: each field's own check, kept by a subclass that changes the default; rules between
fields; traced fields as the only pytree leaves."""

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.core.config import Config, doc, in_range, positive


@dataclass(frozen=True)
class Base(Config):
    steps: int = doc(10, "steps", positive)
    rate: float = doc(0.5, "a rate", in_range(0.0, 1.0), sweepable=True)
    width: int = doc(4, "a width", positive)

    def validate(self) -> None:
        if self.width > self.steps:
            raise ValueError(f"width={self.width} is more than steps={self.steps}")


@dataclass(frozen=True)
class Child(Base):
    steps: int = doc(20, "steps, with another default")  # no check given: the base's still applies


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Base(steps=0), "steps must be > 0, got 0"),
        (lambda: Child(steps=-3), "steps must be > 0, got -3"),
        (lambda: Base(rate=2.0), "rate must be in [0.0, 1.0], got 2.0"),
        (lambda: Base(width=11), "width=11 is more than steps=10"),
    ],
)
def test_each_field_checks_itself_and_subclasses_keep_the_check(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def test_only_traced_fields_are_leaves_and_unknown_or_static_fields_are_refused():
    config = Child()
    assert jax.tree.leaves(config) == [] and Child.sweepable() == ("rate",)
    traced = config.trace(rate=jnp.array([0.1, 0.2]))
    assert traced.traced == ("rate",) and len(jax.tree.leaves(traced)) == 1
    batched = jax.vmap(lambda c: c.rate * c.steps)(traced)  # static fields stay Python values in the trace
    np.testing.assert_allclose(batched, [2.0, 4.0])
    with pytest.raises(ValueError, match="width cannot be swept in one compile"):
        config.trace(width=jnp.array([1, 2]))
    with pytest.raises(ValueError, match="depth is not a field of Child; sweepable: rate"):
        config.trace(depth=1.0)
