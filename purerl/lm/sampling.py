"""Sampling completions from ``CausalLM``: one jitted function, KV-cached by default.

With the cache, the left-padded prompt block ``[B, P]`` is prefilled in one forward pass, then a
fixed-length ``lax.scan`` decodes one token per step, writing its key and value at slot ``P + t``. Without
it (``use_cache=False``, the reference and the benchmark's baseline) every step reruns the full forward
pass over a ``[B, P + N]`` buffer.

Returned log-probs are ``log softmax(logits / temperature)`` of the sampled tokens, computed by
``purerl.lm.model.token_log_probs`` as every trainer computes them. Top-k and top-p truncate the
distribution tokens are *drawn* from, so with them the returned log-probs are not the sampler's own; RL
rollouts should sample with neither (the usual advice: trl#4159, prime-rl#679).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from purerl.core.networks import cast_dense_weights
from purerl.lm.model import CausalLM, init_cache, positions_from_mask, token_log_probs
from purerl.lm.tokenizer import EOS, PAD


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int | None = None  # sample among the k most likely tokens
    top_p: float | None = None  # sample among the smallest set of tokens with probability >= top_p
    greedy: bool = False  # take the most likely token (log-probs still at ``temperature``)
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be positive")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature} must be positive (use greedy=True for argmax)")
        if self.top_k is not None and self.top_k <= 0:
            raise ValueError(f"top_k={self.top_k} must be positive or None")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1] or None")


class Generation(NamedTuple):
    tokens: jax.Array  # [B, N] int32; <pad> after the first <eos>
    log_probs: jax.Array  # [B, N] float32 at the sampling temperature; 0 where mask is false
    mask: jax.Array  # [B, N] bool: true up to and including the first <eos>


def truncated_logits(logits: jax.Array, top_k: int | None, top_p: float | None) -> jax.Array:
    """``logits [B, V]`` with tokens outside the top-k / top-p set at -inf (the most likely is always kept)."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p is not None:
        ordered = jnp.sort(logits, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(ordered, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        # The smallest logit still inside the nucleus: tokens whose preceding mass is below top_p.
        cutoff = jnp.min(jnp.where(mass_before < top_p, ordered, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return logits


def choose_tokens(logits: jax.Array, key: jax.Array, sampling: SamplingConfig) -> jax.Array:
    """One token per row of ``logits [B, V]``."""
    if sampling.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = truncated_logits(logits / sampling.temperature, sampling.top_k, sampling.top_p)
    return jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)


def make_generate(model: CausalLM, sampling: SamplingConfig) -> Callable[..., Generation]:
    """Returns jitted ``generate(params, prompt [B, P], prompt_mask [B, P], key) -> Generation``."""
    steps = sampling.max_new_tokens

    def cached_decoder(params, prompt, prompt_mask):
        batch, prompt_length = prompt.shape
        key_mask = jnp.concatenate([prompt_mask, jnp.ones((batch, steps), bool)], axis=1)
        out = model.apply(
            params,
            prompt,
            positions_from_mask(prompt_mask),
            key_mask,
            init_cache(model.config, batch, prompt_length + steps),
            0,
        )
        prompt_tokens = jnp.sum(prompt_mask, axis=1, dtype=jnp.int32)

        def next_logits(state, token, t):
            # Feed the token sampled at step t into slot P + t; its logits predict step t + 1.
            out = model.apply(params, token[:, None], (prompt_tokens + t)[:, None], key_mask, state, prompt_length + t)
            return out.cache, out.logits[:, 0]

        return out.cache, out.logits[:, -1], next_logits

    def full_decoder(params, prompt, prompt_mask):
        batch, prompt_length = prompt.shape
        tokens = jnp.concatenate([prompt, jnp.full((batch, steps), PAD, jnp.int32)], axis=1)
        mask = jnp.concatenate([prompt_mask, jnp.zeros((batch, steps), bool)], axis=1)

        def next_logits(state, token, t):
            tokens, mask = state
            slot = prompt_length + t
            tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, slot))
            mask = jax.lax.dynamic_update_slice(mask, jnp.ones((batch, 1), bool), (0, slot))
            logits = model.apply(params, tokens, positions_from_mask(mask), mask).logits
            return (tokens, mask), jax.lax.dynamic_index_in_dim(logits, slot, axis=1, keepdims=False)

        logits = model.apply(params, prompt, positions_from_mask(prompt_mask), prompt_mask).logits[:, -1]
        return (tokens, mask), logits, next_logits

    @jax.jit
    def generate(params, prompt: jax.Array, prompt_mask: jax.Array, key: jax.Array) -> Generation:
        prompt_mask = prompt_mask.astype(bool)
        params = cast_dense_weights(params, model.config.compute_dtype)  # once, not once per decoded token
        decoder = cached_decoder if sampling.use_cache else full_decoder
        state, logits, next_logits = decoder(params, prompt, prompt_mask)

        def step(carry, inputs):
            state, logits, done = carry
            t, step_key = inputs
            token = choose_tokens(logits, step_key, sampling)
            log_prob = token_log_probs(logits, token, sampling.temperature)
            valid = ~done
            token = jnp.where(valid, token, PAD)
            done = done | (token == EOS)
            state, logits = next_logits(state, token, t)
            return (state, logits, done), (token, jnp.where(valid, log_prob, 0.0), valid)

        done = jnp.zeros(prompt.shape[0], bool)
        inputs = (jnp.arange(steps), jax.random.split(key, steps))
        _, (tokens, log_probs, mask) = jax.lax.scan(step, (state, logits, done), inputs)
        return Generation(tokens.T, log_probs.T, mask.T)

    return generate
