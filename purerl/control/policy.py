"""The control agents' network, built from a config: its env spec plus the network fields
(``hidden_sizes``, ``activation``, ``log_std_init``) that PPO and GRPO configs share."""

from typing import Protocol

from purerl.control.envs import EnvSpec
from purerl.core.networks import ActorCritic


class NetworkConfig(Protocol):
    spec: EnvSpec
    hidden_sizes: tuple[int, ...]
    activation: str
    log_std_init: float | None


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
    )
