"""A small decoder-only transformer (Flax linen) with an explicit per-layer KV cache.

Token embedding, learned or rotary positions, pre-LayerNorm blocks of causal multi-head self-attention and
a GELU MLP, a final LayerNorm and an output layer tied to the token embedding (GPT-2 / nanoGPT). No dropout:
RL needs ratio = 1 and KL = 0 at step 0, and dropout breaks both. Optional scalar head on the last hidden
state: ``"value"`` (zero-initialised, for PPO's critic) or ``"reward"`` (for a Bradley-Terry reward model).

Every call takes ``positions`` and a ``key_mask`` of valid tokens, so left padding never shifts positions
or leaks into attention. With ``cache`` (from ``init_cache``) the new keys and values are written at
``cache_index`` and attention reads the whole cache: a prompt block is prefilled in one call, then tokens
are decoded one at a time (``purerl.lm.sampling``). Parameters are float32; ``compute_dtype="bfloat16"``
runs matmuls in bf16 while attention softmax, logits and log-probs stay float32.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from purerl.core.networks import compute_dtype
from purerl.lm.tokenizer import Batch

POSITIONS = ("learned", "rope")
SCALAR_HEADS = ("value", "reward")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the transformer; ``max_len`` is the longest prompt + completion it will see."""

    vocab_size: int
    max_len: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    mlp_ratio: int = 4
    positions: str = "learned"
    compute_dtype: str = "float32"
    scalar_head: str | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "d_model", "n_layers", "n_heads", "mlp_ratio"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions={self.positions!r}; choose one of {POSITIONS}")
        if self.positions == "rope" and self.head_dim % 2:
            raise ValueError(f"rotary positions need an even head dimension, got d_model/n_heads={self.head_dim}")
        compute_dtype(self.compute_dtype)
        if self.scalar_head is not None and self.scalar_head not in SCALAR_HEADS:
            raise ValueError(f"scalar_head={self.scalar_head!r}; choose one of {SCALAR_HEADS} or None")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def dtype(self) -> jnp.dtype:
        return compute_dtype(self.compute_dtype)


class LayerCache(NamedTuple):
    keys: jax.Array  # [B, S, H, Dh]
    values: jax.Array  # [B, S, H, Dh]


class LMOutput(NamedTuple):
    logits: jax.Array  # [B, T, V] float32
    scalar: jax.Array | None  # [B, T] float32 when the model has a scalar head
    cache: tuple[LayerCache, ...] | None  # the updated cache, when one was given


def init_cache(config: ModelConfig, batch_size: int, length: int) -> tuple[LayerCache, ...]:
    """An empty cache of ``length`` slots per sequence, one ``LayerCache`` per layer."""
    shape = (batch_size, length, config.n_heads, config.head_dim)
    return tuple(
        LayerCache(jnp.zeros(shape, config.dtype), jnp.zeros(shape, config.dtype)) for _ in range(config.n_layers)
    )


def positions_from_mask(mask: jax.Array) -> jax.Array:
    """Position of each token among the valid tokens of its row: ``[0, 0, 0, 1, 2]`` for ``[0, 0, 1, 1, 1]``."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


def rotate(x: jax.Array, positions: jax.Array) -> jax.Array:
    """Rotary position embedding (Su et al., 2021) of ``x: [B, T, H, Dh]`` at ``positions: [B, T]``,
    rotating the two halves of each head as pairs (GPT-NeoX layout)."""
    half = x.shape[-1] // 2
    frequencies = 1.0 / (10_000.0 ** (jnp.arange(half, dtype=jnp.float32) / half))
    angles = positions[..., None, None].astype(jnp.float32) * frequencies  # [B, T, 1, half]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    first, second = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    rotated = jnp.concatenate([first * cos - second * sin, first * sin + second * cos], axis=-1)
    return rotated.astype(x.dtype)


class OneHotEmbed(nn.Embed):
    """``nn.Embed`` (same parameters, same initialisation) whose lookup is a one-hot matmul in the compute
    dtype at full precision: exact rows forward, and a dense matmul backward. A gather's gradient is a
    scatter-add, which on a GPU is an atomic per element (a compare-and-swap loop in bf16 on Hopper, and in
    f32 too on jax 0.10.2 and 0.11.0), contended where many tokens share a row (``<pad>``), and which
    accumulates in bf16 in a bf16 model. The vocabulary (49) and ``max_len`` (80) are small, so the matmul
    costs ``2 * tokens * rows * d`` FLOPs, a sliver of a step (openxla/xla#26371: contended bf16 scatter-add;
    jax#38806: f32 atomics on 0.10.2/0.11.0; the compiled programs: benchmarks/results/gpu_aot_h100.md).

    ``one_hot=False`` gathers the same rows (the same values, exactly): for the sampler, which takes no
    gradient and launches a few kernels fewer per decoded token."""

    def __call__(self, inputs: jax.Array, one_hot: bool = True) -> jax.Array:
        table = self.embedding.astype(self.dtype)
        if not one_hot:
            return jnp.take(table, inputs, axis=0)
        selector = jax.nn.one_hot(inputs, self.num_embeddings, dtype=self.dtype)
        return jnp.einsum("...v,vd->...d", selector, table, precision=jax.lax.Precision.HIGHEST)


def dense(features: int, config: ModelConfig, std: float = 0.02) -> nn.Dense:
    return nn.Dense(features, dtype=config.dtype, kernel_init=nn.initializers.normal(std))


def residual_projection(config: ModelConfig) -> nn.Dense:
    """A projection back onto the residual stream, initialised with std 0.02 / sqrt(2 * n_layers) (GPT-2)."""
    return dense(config.d_model, config, 0.02 / math.sqrt(2 * config.n_layers))


def attention_implementation(config: ModelConfig, query_length: int, key_length: int, training: bool) -> str:
    """``jax.nn.dot_product_attention``'s backend: cuDNN's fused (flash) kernel on a GPU where it takes the
    shapes (bf16, a head dimension that is a multiple of 8 up to 128, and with a mask in training both lengths
    even: jax's ``check_is_flash_attention``), which never stores the ``[B, H, T, S]`` scores; XLA elsewhere
    (CPU, float32, decoding from the cache). Both compute scores and softmax in float32."""
    cudnn = (
        jax.default_backend() == "gpu"
        and config.dtype == jnp.bfloat16
        and config.head_dim % 8 == 0
        and config.head_dim <= 128
        and training
        and query_length % 2 == 0
        and key_length % 2 == 0
    )
    return "cudnn" if cudnn else "xla"


class CausalSelfAttention(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(
        self, x: jax.Array, positions: jax.Array, key_mask: jax.Array, cache: LayerCache | None, cache_index: jax.Array
    ) -> tuple[jax.Array, LayerCache | None]:
        config = self.config
        batch, length, _ = x.shape
        qkv = dense(3 * config.d_model, config)(x).reshape(batch, length, 3, config.n_heads, config.head_dim)
        queries, keys, values = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if config.positions == "rope":
            queries, keys = rotate(queries, positions), rotate(keys, positions)
        query_slots = jnp.arange(length)
        if cache is not None:
            start = (0, cache_index, 0, 0)
            keys = jax.lax.dynamic_update_slice(cache.keys, keys.astype(cache.keys.dtype), start)
            values = jax.lax.dynamic_update_slice(cache.values, values.astype(cache.values.dtype), start)
            cache = LayerCache(keys, values)
            query_slots = query_slots + cache_index
        key_slots = jnp.arange(keys.shape[1])
        allowed = (key_slots[None, :] <= query_slots[:, None])[None, None] & key_mask[:, None, None, :]
        implementation = attention_implementation(config, length, keys.shape[1], cache is None)
        attended = jax.nn.dot_product_attention(queries, keys, values, mask=allowed, implementation=implementation)
        attended = attended.reshape(batch, length, config.d_model)
        return residual_projection(config)(attended), cache


class Block(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x, positions, key_mask, cache, cache_index):
        config = self.config
        attended, cache = CausalSelfAttention(config)(
            nn.LayerNorm(dtype=config.dtype)(x), positions, key_mask, cache, cache_index
        )
        x = x + attended
        hidden = nn.gelu(dense(config.mlp_ratio * config.d_model, config)(nn.LayerNorm(dtype=config.dtype)(x)))
        x = x + residual_projection(config)(hidden)
        return x, cache


class CausalLM(nn.Module):
    """``apply(params, tokens [B, T], positions [B, T], key_mask, cache=None, cache_index=0) -> LMOutput``.

    ``key_mask`` marks valid tokens: ``[B, T]`` without a cache, ``[B, S]`` over all cache slots with one.
    """

    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        positions: jax.Array,
        key_mask: jax.Array,
        cache: tuple[LayerCache, ...] | None = None,
        cache_index: jax.Array | int = 0,
    ) -> LMOutput:
        config = self.config
        chex.assert_rank(tokens, 2)
        chex.assert_equal_shape((tokens, positions))
        embed = OneHotEmbed(
            config.vocab_size,
            config.d_model,
            dtype=config.dtype,
            embedding_init=nn.initializers.normal(0.02),
            name="token_embed",
        )
        differentiable = cache is None  # a cache means sampling: no gradient, so a gather will do
        x = embed(tokens, one_hot=differentiable)
        if config.positions == "learned":
            positional = OneHotEmbed(config.max_len, config.d_model, dtype=config.dtype, name="position_embed")
            x = x + positional(positions, one_hot=differentiable)
        key_mask = key_mask.astype(bool)
        new_cache = []
        for layer in range(config.n_layers):
            x, layer_cache = Block(config, name=f"block_{layer}")(
                x, positions, key_mask, None if cache is None else cache[layer], cache_index
            )
            new_cache.append(layer_cache)
        x = nn.LayerNorm(dtype=config.dtype, name="final_norm")(x)
        # The tied output layer in float32 at full precision, whatever the compute dtype: RL's ratios and KL
        # estimates are differences of these log-probs. V = 49 rows, so this is a sliver of the step's FLOPs.
        logits = jnp.einsum("btd,vd->btv", x.astype(jnp.float32), embed.embedding, precision=jax.lax.Precision.HIGHEST)
        scalar = None
        if config.scalar_head is not None:
            init = (
                nn.initializers.zeros
                if config.scalar_head == "value"
                else nn.initializers.normal(1 / math.sqrt(config.d_model + 1))
            )
            scalar = nn.Dense(1, kernel_init=init, name=f"{config.scalar_head}_head")(x.astype(jnp.float32))[..., 0]
        return LMOutput(logits, scalar, None if cache is None else tuple(new_cache))


def count_params(params) -> tuple[int, int]:
    """``(total, non_embedding)`` parameter counts; ``non_embedding`` (blocks, norms, heads) is the ``N`` of
    the ``6 N`` training FLOPs per token (Kaplan et al., 2020)."""
    sizes = {jax.tree_util.keystr(path): leaf.size for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
    embedding = sum(size for path, size in sizes.items() if "_embed']" in path)
    total = sum(sizes.values())
    return total, total - embedding


def token_log_probs(logits: jax.Array, tokens: jax.Array, temperature: float | jax.Array = 1.0) -> jax.Array:
    """``log softmax(logits / temperature)[token]`` in float32: the one log-prob used by the sampler and by
    every trainer, so a sampled token is always scored under the distribution it was drawn from."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)
    # A one-hot sum, not take_along_axis: exact, and its gradient is no scatter (see OneHotEmbed).
    return jnp.sum(log_probs * jax.nn.one_hot(tokens, logits.shape[-1], dtype=jnp.float32), axis=-1)


def forward_sequences(model: CausalLM, params, batch: Batch) -> LMOutput:
    """The full forward pass over ``[prompt | completion]`` (no cache), outputs for the completion block.

    ``logits [B, C, V]``: ``logits[:, j]`` predicts ``completion[:, j]`` (read from the slot before it).
    ``scalar [B, C + 1]``: the head at the same slots plus one, so ``scalar[:, j]`` is read *before*
    ``completion[:, j]`` (a value head's ``V(s_j)``, the state in which token ``j`` is chosen) and
    ``scalar[:, j + 1]`` *at* it (a reward model reads the score at the last real token ``e`` as
    ``scalar[:, e + 1]``).
    """
    tokens = jnp.concatenate([batch.prompt, batch.completion], axis=1)
    mask = jnp.concatenate([batch.prompt_mask, batch.completion_mask], axis=1)
    out = model.apply(params, tokens, positions_from_mask(mask), mask)
    prompt_length = batch.prompt.shape[1]
    logits = out.logits[:, prompt_length - 1 : -1]
    scalar = None if out.scalar is None else out.scalar[:, prompt_length - 1 :]
    return LMOutput(logits, scalar, None)


def completion_log_probs(model: CausalLM, params, batch: Batch, temperature: float | jax.Array = 1.0) -> jax.Array:
    """Per-token log-probs ``[B, C]`` of the completion block given the prompt (0 where masked out)."""
    logits = forward_sequences(model, params, batch).logits
    return jnp.where(batch.completion_mask, token_log_probs(logits, batch.completion, temperature), 0.0)
