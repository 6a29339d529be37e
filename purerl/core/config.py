"""Field helpers and checks shared by the frozen config dataclasses.

Each check raises a one-line ``ValueError`` naming the field, the bad value and what is allowed, before
anything is traced or compiled."""

import dataclasses
from collections.abc import Sequence
from typing import Any


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
