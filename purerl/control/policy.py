"""The control agents' network, built from a config: its env spec plus the network fields
(``hidden_sizes``, ``activation``, ``log_std_init``, ``compute_dtype``) that PPO and GRPO configs share."""

from typing import Protocol

from purerl.control.envs import EnvSpec
from purerl.core.config import require_choice
from purerl.core.networks import ACTIVATIONS, ActorCritic


class NetworkConfig(Protocol):
    spec: EnvSpec
    hidden_sizes: tuple[int, ...]
    activation: str
    log_std_init: float | None
    compute_dtype: str


def check_network_fields(config: NetworkConfig) -> None:
    """One-line errors for bad network fields (called by the configs' ``__post_init__``)."""
    check_hidden_sizes(config.hidden_sizes)
    require_choice("activation", config.activation, tuple(ACTIVATIONS))
    if config.log_std_init is not None and config.spec.discrete:
        raise ValueError(f"log_std_init is for continuous actions; {config.spec.name} has discrete actions")


def check_hidden_sizes(hidden_sizes: tuple[int, ...], name: str = "hidden_sizes") -> None:
    if not hidden_sizes or min(hidden_sizes) <= 0:
        raise ValueError(f"{name} must be non-empty positive widths, got {hidden_sizes!r}")


def make_network(config: NetworkConfig) -> ActorCritic:
    """Categorical policy for discrete actions, diagonal Gaussian (log-std starting at ``log_std_init``,
    default 0) for continuous ones."""
    spec = config.spec
    return ActorCritic(
        action_dim=spec.action_dim,
        discrete=spec.discrete,
        hidden_sizes=config.hidden_sizes,
        activation=config.activation,
        log_std_init=0.0 if config.log_std_init is None else config.log_std_init,
        compute_dtype=config.compute_dtype,
    )
