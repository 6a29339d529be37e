"""The control agents' networks, with the PPO initialisation details.

Separate actor and critic MLPs (no shared torso), orthogonal weights with gain sqrt(2) in hidden layers,
0.01 on the policy head (near-uniform initial policy) and 1.0 on the value head, zero biases
(Huang et al., "The 37 Implementation Details of PPO", core details 2 and 13). SAC's squashed-Gaussian actor
and twin Q-critics are built from the same MLP and initialisation.
"""

from collections.abc import Sequence
from typing import Any

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.config import require_choice
from purerl.core.distributions import TanhSquashedGaussian

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}


def orthogonal(gain: float) -> nn.initializers.Initializer:
    """Flax's orthogonal initializer (a QR of a Gaussian matrix, Saxe et al. 2014), drawing the matrices of a
    ``vmap`` over keys (seeds) one after another on the CPU.

    Vmapped, the QR is jaxlib's batched LAPACK kernel, which splits a large batch over XLA's intra-op thread
    pool and blocks its own pool thread until the parts are done. XLA runs independent kernels at once (the
    actor's and the critic's), and with two pool threads (2 cores) both can end up waiting: ``jit(vmap(init))``
    of 256 seeds hung at 0% CPU (native stacks: two ``tf_XLAEigen`` threads in ``lapack_sgeqrf_ffi`` ->
    ``ParallelBatchMap`` -> ``BlockingCounter::Wait``). One matrix at a time (``lax.map``) gives each kernel a
    batch of one, the same values, and costs nothing that matters at initialisation. On other backends the
    batch stays batched."""
    base = nn.initializers.orthogonal(gain)

    def init(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        @jax.custom_batching.custom_vmap
        def draw(key: jax.Array) -> jax.Array:
            return base(key, shape, dtype)

        @draw.def_vmap
        def draw_batch(axis_size: int, in_batched: list[bool], keys: jax.Array) -> tuple[jax.Array, bool]:
            if not in_batched[0]:
                return draw(keys), False
            if jax.default_backend() == "cpu":
                return jax.lax.map(draw, keys), True
            return jax.vmap(lambda key: base(key, shape, dtype))(keys), True

        return draw(key)

    return init


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}  # a config's compute_dtype -> the dtype


def compute_dtype(name: str) -> jnp.dtype:
    """``COMPUTE_DTYPES[name]``; a bad name raises a one-line ``ValueError`` naming it and the choices."""
    require_choice("compute_dtype", name, tuple(COMPUTE_DTYPES))
    return COMPUTE_DTYPES[name]


def cast_dense_weights(params: Any, dtype_name: str) -> Any:
    """``params`` with the kernels and biases of every module named ``Dense_<i>`` in ``compute_dtype(dtype_name)``,
    every other leaf as it is.

    For networks whose ``Dense_<i>`` modules all compute in that dtype, as purerl's do (``MLP``'s hidden
    layers, the LM's blocks; their heads, norms and embeddings have other names): such a ``Dense`` casts its
    weights to its dtype anyway, so the outputs are bitwise the same. A float32 ``nn.Dense`` left unnamed
    beside bfloat16 ones would be auto-named ``Dense_<i>`` and cast too: name it. This is for
    loops that apply a network many times with the same weights (rollouts, decoding): XLA does not hoist the
    casts of loop-invariant weights out of a loop, and converts each weight matrix again at every step, one
    kernel launch each on a GPU (48 of the bf16 small LM's 156 kernels per decoded token)."""

    dtype = compute_dtype(dtype_name)

    def cast(path: tuple, leaf: jax.Array) -> jax.Array:
        in_dense = any(str(getattr(entry, "key", "")).startswith("Dense_") for entry in path)
        return leaf.astype(dtype) if in_dense else leaf

    return jax.tree_util.tree_map_with_path(cast, params)


def dense(features: int, gain: float, dtype: jnp.dtype = jnp.float32, name: str | None = None) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, kernel_init=orthogonal(gain), bias_init=nn.initializers.zeros, name=name)


class MLP(nn.Module):
    """Hidden layers only: ``[..., in] -> [..., hidden_sizes[-1]]`` float32.

    ``compute_dtype="bfloat16"`` runs the hidden layers' matmuls and activations in bfloat16 (mixed precision:
    the parameters and the output stay float32), which halves the bytes a GPU moves per layer; the heads that
    read the output, and so the log-probs, values and losses, stay float32."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    compute_dtype: str = "float32"
    layer_norm: bool = False  # LayerNorm after each Dense, before the activation (SAC's critics, Ball et al. 2023)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = compute_dtype(self.compute_dtype)
        x = x.astype(dtype)
        for i, width in enumerate(self.hidden_sizes):
            x = dense(width, np.sqrt(2.0), dtype)(x)
            if self.layer_norm:
                x = nn.LayerNorm(dtype=dtype, name=f"LayerNorm_{i}")(x)
            x = ACTIVATIONS[self.activation](x)
        return x.astype(jnp.float32)


class ActorCritic(nn.Module):
    """Policy ``obs -> distribution over actions`` and value ``obs -> V(obs)`` on flat observations ``[..., D]``.

    Discrete actions: a Categorical over ``action_dim`` logits. Continuous actions: a diagonal Gaussian whose
    log-std is a learned state-independent vector (initialised to ``log_std_init``). ``compute_dtype``: the
    torsos' dtype (see ``MLP``); the heads, their outputs and the distributions are float32.
    """

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    log_std_init: float = 0.0
    compute_dtype: str = "float32"

    def setup(self) -> None:
        self.actor_torso = MLP(self.hidden_sizes, self.activation, self.compute_dtype)
        self.actor_head = dense(self.action_dim, 0.01)
        self.critic_torso = MLP(self.hidden_sizes, self.activation, self.compute_dtype)
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


LOG_STD_RANGE = (-5.0, 2.0)  # SAC's policy log-std bounds (CleanRL's sac_continuous_action.py; SpinningUp: -20, 2)


class SquashedGaussianActor(nn.Module):
    """SAC's policy: ``obs [..., D] -> TanhSquashedGaussian`` over ``[action_low, action_high]^action_dim``, the
    mean and the log-std both state-dependent heads; the log-std is squashed smoothly into ``LOG_STD_RANGE``
    by ``tanh`` (CleanRL), so neither a near-deterministic nor an exploding policy is reachable."""

    action_dim: int
    action_low: float
    action_high: float
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, obs: jax.Array) -> TanhSquashedGaussian:
        x = MLP(self.hidden_sizes, self.activation, self.compute_dtype)(obs)
        mean = dense(self.action_dim, 0.01, name="mean")(x)
        low, high = LOG_STD_RANGE
        log_std = low + 0.5 * (high - low) * (jnp.tanh(dense(self.action_dim, 0.01, name="log_std")(x)) + 1.0)
        return TanhSquashedGaussian(mean, log_std, self.action_low, self.action_high)


class StateActionEnsemble(nn.Module):
    """``num_members`` independent MLPs to a scalar on the concatenation of an observation and an action:
    ``(obs [..., D], action [..., A]) -> [num_members, ...]`` float32. SAC's twin critics are two (Fujimoto et
    al. 2018's clipped double Q); PbRL's reward model is an ensemble of them (Christiano et al. 2017). With
    ``member_inputs`` the inputs carry a leading member axis (``[num_members, ..., D]``) and member k reads only
    slice k: an ensemble trained on each member's own minibatch costs one member's work per row."""

    num_members: int = 2
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    compute_dtype: str = "float32"
    layer_norm: bool = False
    member_inputs: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        members = nn.vmap(
            QNetwork,  # each member's parameters live under this name (SAC checkpoints depend on it)
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=0 if self.member_inputs else None,
            out_axes=0,
            axis_size=self.num_members,
        )
        return members(self.hidden_sizes, self.activation, self.compute_dtype, self.layer_norm)(x)


class QNetwork(nn.Module):
    """One member of a ``StateActionEnsemble`` (a Q-network, or a reward model): ``[..., D + A] -> [...]``."""

    hidden_sizes: Sequence[int]
    activation: str
    compute_dtype: str
    layer_norm: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = MLP(self.hidden_sizes, self.activation, self.compute_dtype, self.layer_norm)(x)
        return dense(1, 1.0, name="q")(x)[..., 0]
