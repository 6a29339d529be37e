"""Actor-critic networks with the PPO initialisation details.

Separate actor and critic MLPs (no shared torso), orthogonal weights with gain sqrt(2) in hidden layers,
0.01 on the policy head (near-uniform initial policy) and 1.0 on the value head, zero biases
(Huang et al., "The 37 Implementation Details of PPO", core details 2 and 13).
"""

from collections.abc import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


def dense(features: int, gain: float) -> nn.Dense:
    return nn.Dense(features, kernel_init=nn.initializers.orthogonal(gain), bias_init=nn.initializers.zeros)


class MLP(nn.Module):
    """Hidden layers only: ``[..., in] -> [..., hidden_sizes[-1]]``."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden_sizes:
            x = ACTIVATIONS[self.activation](dense(width, np.sqrt(2.0))(x))
        return x


class ActorCritic(nn.Module):
    """Policy ``obs -> distribution over actions`` and value ``obs -> V(obs)`` on flat observations ``[..., D]``.

    Discrete actions: a Categorical over ``action_dim`` logits. Continuous actions: a diagonal Gaussian whose
    log-std is a learned state-independent vector (initialised to ``log_std_init``).
    """

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0

    def setup(self) -> None:
        self.actor_torso = MLP(self.hidden_sizes, self.activation)
        self.actor_head = dense(self.action_dim, 0.01)
        self.critic_torso = MLP(self.hidden_sizes, self.activation)
        self.critic_head = dense(1, 1.0)
        if not self.discrete:
            self.log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,))

    def policy(self, obs: jax.Array) -> distrax.Distribution:
        out = self.actor_head(self.actor_torso(obs))
        if self.discrete:
            return distrax.Categorical(logits=out)
        return distrax.MultivariateNormalDiag(loc=out, scale_diag=jnp.exp(self.log_std) * jnp.ones_like(out))

    def value(self, obs: jax.Array) -> jax.Array:
        return self.critic_head(self.critic_torso(obs))[..., 0]

    def __call__(self, obs: jax.Array) -> tuple[distrax.Distribution, jax.Array]:
        return self.policy(obs), self.value(obs)
