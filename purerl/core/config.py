"""Field helpers and checks shared by the frozen config dataclasses.

Each check raises a one-line ``ValueError`` naming the field, the bad value and what is allowed, before
anything is traced or compiled."""

import copy
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

C = TypeVar("C")


def doc(default: Any, help: str) -> Any:
    """A dataclass field with a default and a one-line description (shown by ``--help``)."""
    return dataclasses.field(default=default, metadata={"help": help})


def require_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def require_non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def require_in_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")


def require_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def require_divisible(name: str, value: int, divisor_name: str, divisor: int) -> None:
    if value % divisor != 0:
        raise ValueError(f"{name}={value} is not divisible by {divisor_name}={divisor}")


def check_hyperparams(config: Any, names: Iterable[str]) -> None:
    """Every name must be one of the config's ``SWEEPABLE`` fields: those that change no shape and no
    Python branch of the training loop, so one compiled program serves every value."""
    sweepable = type(config).SWEEPABLE
    fields = {f.name for f in dataclasses.fields(config)}
    for name in names:
        if name not in fields:
            raise ValueError(f"{name} is not a field of {type(config).__name__}; sweepable: {', '.join(sweepable)}")
        if name not in sweepable:
            raise ValueError(
                f"{name} cannot be swept in one compile (it changes shapes or compiled branches); "
                f"sweepable: {', '.join(sweepable)}"
            )


def with_hyperparams(config: C, hparams: Mapping[str, Any]) -> C:
    """``config`` with the fields named in ``hparams`` set to those values, which may be traced arrays.

    This is how a training loop reads one sweep point's hyperparameters, carried as arrays in its state.
    ``__post_init__`` is skipped on purpose: tracers cannot be compared, and each value was validated on a
    real config when the sweep was built."""
    if not hparams:
        return config
    traced = copy.copy(config)
    for name, value in hparams.items():
        object.__setattr__(traced, name, value)
    return traced
