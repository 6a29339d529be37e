"""The base of every frozen config dataclass: each field carries its help text and its own check, and a
control config is a pytree whose swept fields are its leaves.

- ``doc(default, help, check=..., sweepable=...)`` declares a field. ``check(name, value)`` raises a one-line
  ``ValueError`` naming the field, the bad value and what is allowed (``positive``, ``non_negative``,
  ``in_range``, ``one_of``, ``optional``); ``Config.__post_init__`` runs every field's check, then the
  config's ``validate()`` for rules between fields, before anything is traced or compiled.
- ``sweepable=True`` marks a field that changes no shape and no compiled branch, so one compiled program
  serves every value. ``config.trace(name=values, ...)`` returns the same config with those fields as pytree
  leaves holding (possibly batched) arrays; every other field stays static, in the tree's structure. A
  training loop reads everything from that one config: ``config.gamma`` is the run's own value whether it
  is swept (a traced leaf) or not (a Python constant). A config with nothing traced has no leaves at all.
"""

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Self

import jax

Check = Callable[[str, Any], None]


def doc(default: Any, help: str, check: Check | None = None, sweepable: bool = False) -> Any:
    """A dataclass field with a default, a one-line description (shown by ``--help``), its check and whether
    a sweep may trace it."""
    return dataclasses.field(default=default, metadata={"help": help, "check": check, "sweepable": sweepable})


def finite(name: str, value: float) -> None:
    if not -math.inf < value < math.inf:
        raise ValueError(f"{name} must be finite, got {value!r}")


def positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    finite(name, value)


def non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    finite(name, value)


def positive_whole(name: str, value: float) -> None:
    """A count: a whole number > 0 (a sweep passes its values as floats)."""
    if value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    positive(name, value)


def all_positive(name: str, values: Sequence[float]) -> None:
    """A tuple field of one or more finite values, each > 0."""
    if not values or not all(0 < value < math.inf for value in values):
        raise ValueError(f"{name} must be one or more finite values > 0, got {values!r}")


def finite_non_negative(name: str, value: float) -> None:
    if not 0 <= value < math.inf:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def at_least(minimum: int, why: str) -> Check:
    """``value >= minimum``; ``why`` says what a smaller value lacks."""

    def check(name: str, value: int) -> None:
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum} {why}, got {value!r}")

    return check


def in_range(low: float, high: float) -> Check:
    def check(name: str, value: float) -> None:
        if not low <= value <= high:
            raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")

    return check


def one_of(*choices: Any) -> Check:
    def check(name: str, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")

    return check


def optional(check: Check) -> Check:
    """``check`` for a field that may also be None."""
    return lambda name, value: None if value is None else check(name, value)


def require_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    one_of(*choices)(name, value)


def require_divisible(name: str, value: int, divisor_name: str, divisor: int) -> None:
    if value % divisor != 0:
        raise ValueError(f"{name}={value} is not divisible by {divisor_name}={divisor}")


def _is_traced(value: Any) -> bool:
    return isinstance(value, jax.Array)


class Config:
    """Base of purerl's frozen config dataclasses (subclass and decorate with ``@dataclass(frozen=True)``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_with_keys(cls, cls._flatten_with_keys, cls._unflatten, cls._flatten)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_traced", ())
        for field in dataclasses.fields(self):
            check, value = type(self)._check_of(field.name), getattr(self, field.name)
            if check is not None and not _is_traced(value):
                check(field.name, value)
        self.validate()

    @classmethod
    def _check_of(cls, name: str) -> Check | None:
        """The field's check; a subclass that gives a field a new default keeps its base's check."""
        for klass in cls.__mro__:
            field = getattr(klass, "__dataclass_fields__", {}).get(name)
            if field is not None and field.metadata.get("check") is not None:
                return field.metadata["check"]
        return None

    def validate(self) -> None:
        """Rules between fields (one-line ``ValueError``); each field's own check has already run."""

    @classmethod
    def sweepable(cls) -> tuple[str, ...]:
        """The fields a sweep may trace."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("sweepable"))

    @property
    def traced(self) -> tuple[str, ...]:
        """The fields that are pytree leaves here (set by ``trace``)."""
        return self._traced

    def require_sweepable(self, name: str) -> None:
        """One-line errors for a field that does not exist or is not sweepable."""
        sweepable = type(self).sweepable()
        if name not in {f.name for f in dataclasses.fields(self)}:
            raise ValueError(f"{name} is not a field of {type(self).__name__}; sweepable: {', '.join(sweepable)}")
        if name not in sweepable:
            raise ValueError(
                f"{name} cannot be swept in one compile (it changes shapes or compiled branches); "
                f"sweepable: {', '.join(sweepable)}"
            )

    def check_traceable(self, name: str) -> None:
        """Rules of a config for tracing a sweepable field given its other values (one-line ``ValueError``)."""

    def trace(self, **values: Any) -> Self:
        """This config with each named sweepable field a pytree leaf holding ``values[name]`` (an array: a
        scalar per run, or one value per run along a leading axis to ``jax.vmap`` over). The values are not
        checked here: check each one on a plain config (``dataclasses.replace``) first."""
        for name in values:
            self.require_sweepable(name)
            self.check_traceable(name)
        traced = tuple(f.name for f in dataclasses.fields(self) if f.name in values or f.name in self._traced)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        leaves = [jax.numpy.asarray(values.get(name, fields[name]), jax.numpy.float32) for name in traced]
        return type(self)._unflatten((traced, tuple((k, v) for k, v in fields.items() if k not in traced)), leaves)

    def _flatten(self) -> tuple[list[Any], tuple]:
        static = tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in self._traced)
        return [getattr(self, name) for name in self._traced], (self._traced, static)

    def _flatten_with_keys(self) -> tuple[list[tuple[Any, Any]], tuple]:
        leaves, aux = self._flatten()
        return [(jax.tree_util.GetAttrKey(n), leaf) for n, leaf in zip(self._traced, leaves, strict=True)], aux

    @classmethod
    def _unflatten(cls, aux: tuple, leaves: Sequence[Any]) -> Self:
        traced, static = aux
        config = object.__new__(cls)
        for name, value in (*static, *zip(traced, leaves, strict=True)):
            object.__setattr__(config, name, value)
        object.__setattr__(config, "_traced", traced)
        return config
