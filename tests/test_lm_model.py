"""The causal LM and its sampler: KV-cached decoding equals the full forward pass, padding changes nothing,
log-probs are the trainer's, and top-k / top-p / greedy pick what a plain loop picks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.core.networks import cast_dense_weights
from purerl.lm.model import (
    CausalLM,
    CausalSelfAttention,
    ModelConfig,
    completion_log_probs,
    count_params,
    forward_sequences,
    init_cache,
    positions_from_mask,
)
from purerl.lm.rollout import last_token_scores
from purerl.lm.sampling import SamplingConfig, make_generate, truncated_logits
from purerl.lm.sft import SFTConfig, demonstration_batch, make_sft, sft_model
from purerl.lm.tokenizer import EOS, PAD, Batch, CharTokenizer, encode_batch, encode_prompts

TOKENIZER = CharTokenizer()
PROMPTS = ["a", "hello", "the plot was", "12+34"]  # mixed lengths: left padding differs per row
MAX_PROMPT = 12


def build(positions="learned", scalar_head=None, compute_dtype="float32", seed=0):
    config = ModelConfig(
        TOKENIZER.vocab_size, max_len=40, d_model=32, n_layers=2, n_heads=4,
        positions=positions, scalar_head=scalar_head, compute_dtype=compute_dtype,
    )  # fmt: skip
    model = CausalLM(config)
    tokens = jnp.zeros((1, 4), jnp.int32)
    params = model.init(jax.random.key(seed), tokens, tokens, jnp.ones((1, 4), bool))
    return model, params


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_cached_decoding_equals_the_full_forward_pass(positions):
    model, params = build(positions)
    completions = ["xyz", "ab", "good.", "46"]
    batch = encode_batch(TOKENIZER, PROMPTS, completions, MAX_PROMPT, 6)
    full = forward_sequences(model, params, batch)

    # Prefill the prompt block, then feed the completion one token at a time through the cache.
    batch_size, prompt_length = batch.prompt.shape
    steps = batch.completion.shape[1]
    key_mask = jnp.concatenate([batch.prompt_mask, jnp.ones((batch_size, steps), bool)], axis=1)
    cache = init_cache(model.config, batch_size, prompt_length + steps)
    out = model.apply(params, batch.prompt, positions_from_mask(batch.prompt_mask), key_mask, cache, 0)
    cached_logits, cache = [out.logits[:, -1]], out.cache
    prompt_tokens = batch.prompt_mask.sum(axis=1)
    for t in range(steps - 1):
        token = batch.completion[:, t : t + 1]
        out = model.apply(params, token, (prompt_tokens + t)[:, None], key_mask, cache, prompt_length + t)
        cached_logits.append(out.logits[:, 0])
        cache = out.cache
    cached_logits = np.stack(cached_logits, axis=1)
    valid = batch.completion_mask
    np.testing.assert_allclose(cached_logits[valid], np.asarray(full.logits)[valid], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_left_padding_changes_nothing(positions):
    model, params = build(positions)
    completions = ["xyz", "ab", "good.", "46"]
    short = encode_batch(TOKENIZER, PROMPTS, completions, MAX_PROMPT, 6)
    padded = encode_batch(TOKENIZER, PROMPTS, completions, MAX_PROMPT + 7, 6)
    log_probs = [completion_log_probs(model, params, b) for b in (short, padded)]
    np.testing.assert_allclose(log_probs[0], log_probs[1], atol=1e-5)
    # Changing the tokens under the padding (pads and after <eos>) changes nothing either.
    noisy_prompt = np.where(padded.prompt_mask, padded.prompt, 17)
    noisy_completion = np.where(padded.completion_mask, padded.completion, 23)
    noisy = completion_log_probs(model, params, padded._replace(prompt=noisy_prompt, completion=noisy_completion))
    np.testing.assert_allclose(noisy, log_probs[1], atol=1e-5)


@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_log_probs_are_the_trainers_and_the_mask_ends_at_eos(use_cache):
    model, params = build()
    prompt, prompt_mask = encode_prompts(TOKENIZER, PROMPTS, MAX_PROMPT)
    sampling = SamplingConfig(max_new_tokens=24, temperature=0.7, use_cache=use_cache)
    gen = make_generate(model, sampling)(params, prompt, prompt_mask, jax.random.key(3))
    rescored = completion_log_probs(model, params, Batch(prompt, prompt_mask, gen.tokens, gen.mask), temperature=0.7)
    np.testing.assert_allclose(gen.log_probs, rescored, atol=1e-5)
    tokens, mask = np.asarray(gen.tokens), np.asarray(gen.mask)
    for row in range(len(PROMPTS)):
        eos = np.flatnonzero(tokens[row] == EOS)
        end = eos[0] + 1 if len(eos) else tokens.shape[1]
        assert mask[row, :end].all() and not mask[row, end:].any()
        assert (tokens[row, end:] == PAD).all()
    assert (np.asarray(gen.log_probs)[~mask] == 0).all()


def test_cached_and_uncached_generation_agree():
    model, params = build("rope")
    prompt, prompt_mask = encode_prompts(TOKENIZER, PROMPTS, MAX_PROMPT)
    generations = [
        make_generate(model, SamplingConfig(16, use_cache=use_cache))(params, prompt, prompt_mask, jax.random.key(5))
        for use_cache in (True, False)
    ]
    np.testing.assert_array_equal(generations[0].tokens, generations[1].tokens)
    np.testing.assert_allclose(generations[0].log_probs, generations[1].log_probs, atol=1e-5)


def test_same_key_same_sample_and_greedy_is_argmax():
    model, params = build()
    prompt, prompt_mask = encode_prompts(TOKENIZER, PROMPTS, MAX_PROMPT)
    generate = make_generate(model, SamplingConfig(8))
    first, again = (generate(params, prompt, prompt_mask, jax.random.key(7)) for _ in range(2))
    np.testing.assert_array_equal(first.tokens, again.tokens)
    greedy = make_generate(model, SamplingConfig(1, greedy=True))(params, prompt, prompt_mask, jax.random.key(0))
    full = model.apply(params, prompt, positions_from_mask(prompt_mask), prompt_mask).logits[:, -1]
    np.testing.assert_array_equal(greedy.tokens[:, 0], np.argmax(full, axis=-1))


def reference_truncation(logits: np.ndarray, top_k, top_p) -> np.ndarray:
    """Plain loops: keep the top-k tokens, then the most likely tokens until their probability reaches top_p."""
    out = logits.copy()
    for row in out:
        order = sorted(range(len(row)), key=lambda i: -row[i])
        if top_k is not None:
            for i in order[top_k:]:
                row[i] = -np.inf
        if top_p is not None:
            kept = [i for i in order if np.isfinite(row[i])]
            probs = np.exp(row[kept] - row[kept].max())
            probs /= probs.sum()
            mass = 0.0
            for rank in range(len(kept)):
                if mass >= top_p:
                    row[kept[rank:]] = -np.inf
                    break
                mass += probs[rank]
    return out


@pytest.mark.parametrize("top_k,top_p", [(3, None), (None, 0.5), (None, 0.9), (5, 0.6), (None, 1.0)])
def test_top_k_and_top_p_keep_what_a_plain_loop_keeps(top_k, top_p):
    logits = np.asarray(jax.random.normal(jax.random.key(1), (6, 11)) * 2.0)
    expected = reference_truncation(logits, top_k, top_p)
    np.testing.assert_array_equal(
        np.isfinite(truncated_logits(jnp.asarray(logits), top_k, top_p)), np.isfinite(expected)
    )


def test_top_k_sampling_only_draws_allowed_tokens():
    model, params = build()
    prompt, prompt_mask = encode_prompts(TOKENIZER, PROMPTS, MAX_PROMPT)
    gen = make_generate(model, SamplingConfig(1, top_k=2))
    full = model.apply(params, prompt, positions_from_mask(prompt_mask), prompt_mask).logits[:, -1]
    top2 = np.argsort(-np.asarray(full), axis=-1)[:, :2]
    for seed in range(10):
        tokens = np.asarray(gen(params, prompt, prompt_mask, jax.random.key(seed)).tokens[:, 0])
        assert all(token in allowed for token, allowed in zip(tokens, top2, strict=True))


def test_value_head_starts_at_zero_and_reward_head_does_not():
    value_model, value_params = build(scalar_head="value")
    reward_model, reward_params = build(scalar_head="reward")
    batch = encode_batch(TOKENIZER, PROMPTS, ["x", "y", "z", "w"], MAX_PROMPT, 4)
    assert np.all(np.asarray(forward_sequences(value_model, value_params, batch).scalar) == 0)
    assert np.std(np.asarray(forward_sequences(reward_model, reward_params, batch).scalar)) > 0


def test_bfloat16_compute_keeps_float32_params_and_close_logits():
    model32, params = build()
    model16, _ = build(compute_dtype="bfloat16")
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    prompt, prompt_mask = encode_prompts(TOKENIZER, PROMPTS, MAX_PROMPT)
    positions = positions_from_mask(prompt_mask)
    logits32 = model32.apply(params, prompt, positions, prompt_mask).logits
    logits16 = model16.apply(params, prompt, positions, prompt_mask).logits
    assert logits16.dtype == jnp.float32
    np.testing.assert_allclose(logits16, logits32, atol=0.05)


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_casting_dense_weights_once_changes_no_output(compute_dtype):
    """The sampler casts the blocks' weights before its decode loop: the same bits out, in prefill and decode,
    and only the blocks' Dense leaves change dtype (norms, embeddings and the reward head stay float32)."""
    model, params = build(scalar_head="reward", compute_dtype=compute_dtype)
    cast = cast_dense_weights(params, compute_dtype)
    dtypes = {jax.tree_util.keystr(path): leaf.dtype for path, leaf in jax.tree_util.tree_leaves_with_path(cast)}
    in_blocks = {path: dtype for path, dtype in dtypes.items() if "Dense_" in path}
    assert len(in_blocks) == 2 * 4 * model.config.n_layers  # kernel and bias of qkv, out, MLP in, MLP out
    assert set(in_blocks.values()) == {np.dtype(compute_dtype)}
    assert {dtype for path, dtype in dtypes.items() if path not in in_blocks} == {np.dtype("float32")}
    prompt, prompt_mask = encode_prompts(TOKENIZER, PROMPTS, MAX_PROMPT)
    steps = 3
    key_mask = jnp.concatenate([prompt_mask, jnp.ones((len(PROMPTS), steps), bool)], axis=1)
    outputs = []
    for weights in (params, cast):
        cache = init_cache(model.config, len(PROMPTS), prompt.shape[1] + steps)
        prefill = model.apply(weights, prompt, positions_from_mask(prompt_mask), key_mask, cache, 0)
        token = jnp.argmax(prefill.logits[:, -1], axis=-1)[:, None].astype(jnp.int32)
        positions = prompt_mask.sum(axis=1, keepdims=True)
        decode = model.apply(weights, token, positions, key_mask, prefill.cache, prompt.shape[1])
        outputs.append([prefill.logits, prefill.scalar, decode.logits, decode.scalar])
    for before, after in zip(*outputs, strict=True):
        np.testing.assert_array_equal(after, before)


def test_parameter_count_and_config_errors():
    model, params = build()
    total, non_embedding = count_params(params)
    d, layers, vocab = 32, 2, TOKENIZER.vocab_size
    assert non_embedding == layers * (12 * d * d + 13 * d) + 2 * d  # blocks + final LayerNorm
    assert total == non_embedding + vocab * d + 40 * d  # + token and position embeddings
    with pytest.raises(ValueError, match="d_model=30 is not divisible by n_heads=4"):
        ModelConfig(10, 8, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="positions='alibi'"):
        ModelConfig(10, 8, positions="alibi")
    with pytest.raises(ValueError, match="temperature=0 must be positive"):
        SamplingConfig(4, temperature=0)


def sentiment_batch(size: int) -> Batch:
    """SFT demonstrations of the sentiment task at the benchmark's layout (left-padded prompts, right-padded
    completions: many ``<pad>`` tokens and many updates of common characters' rows)."""
    config = SFTConfig(task="sentiment", batch_size=size)
    return demonstration_batch(config, config.task_instance, TOKENIZER, step=0)


def test_bfloat16_logits_are_a_float32_projection_of_the_hidden_states():
    """The tied output layer runs in float32 whatever the compute dtype: the logits of a bf16 model equal a
    float64 projection of its (bf16) final hidden states onto the float32 embedding, to float32 rounding.
    (A bf16 matmul cast to float32 afterwards, as before, is off by bf16 rounding: about 4e-3 relative.)"""
    model, params = build(compute_dtype="bfloat16")
    prompt, prompt_mask = encode_prompts(TOKENIZER, PROMPTS, MAX_PROMPT)
    out, captured = model.apply(
        params, prompt, positions_from_mask(prompt_mask), prompt_mask, capture_intermediates=True
    )
    hidden = np.asarray(captured["intermediates"]["final_norm"]["__call__"][0], np.float64)
    table = np.asarray(params["params"]["token_embed"]["embedding"], np.float64)
    assert out.logits.dtype == jnp.float32
    np.testing.assert_allclose(out.logits, hidden @ table.T, rtol=1e-5, atol=1e-7)


def test_bfloat16_embedding_gradients_are_within_1e2_of_float32():
    """A bf16 model's embedding gradients accumulate in float32 (a one-hot matmul, not a bf16 scatter-add,
    which lost 7e-2 over a batch's thousands of updates of the same rows)."""
    batch = sentiment_batch(256)
    config = ModelConfig(TOKENIZER.vocab_size, batch.prompt.shape[1] + batch.completion.shape[1], d_model=32)
    model32, model16 = CausalLM(config), CausalLM(dataclasses.replace(config, compute_dtype="bfloat16"))
    tokens = jnp.zeros((1, 4), jnp.int32)
    params = model32.init(jax.random.key(0), tokens, tokens, jnp.ones((1, 4), bool))

    def gradient(model):
        return jax.jit(jax.grad(lambda p: -jnp.sum(completion_log_probs(model, p, batch))))(params)["params"]

    exact, bf16 = gradient(model32), gradient(model16)
    for table in ("token_embed", "position_embed"):
        g32, g16 = np.asarray(exact[table]["embedding"]), np.asarray(bf16[table]["embedding"])
        assert np.linalg.norm(g16 - g32) / np.linalg.norm(g32) < 1e-2, table


def test_no_scatter_in_a_language_model_train_step():
    """Every LM method's gradient goes through the embeddings, the completion log-probs and (reward model,
    critic) the scalar at the last token: none compiles to a scatter, which a GPU runs as contended atomics."""
    config = SFTConfig(task="sentiment", batch_size=8)
    method = make_sft(config)
    batch = method.sample(method.state, 0)
    texts = {"sft": method.update.lower(method.state, batch).compile().as_text()}
    model = sft_model(config, scalar_head="reward")
    tokens = jnp.zeros((1, 4), jnp.int32)
    params = model.init(jax.random.key(0), tokens, tokens, jnp.ones((1, 4), bool))

    def objective(params):
        return jnp.sum(completion_log_probs(model, params, batch)) + jnp.sum(last_token_scores(model, params, batch))

    texts["log-probs and last-token scores"] = jax.jit(jax.grad(objective)).lower(params).compile().as_text()
    for name, text in texts.items():
        assert " scatter(" not in text, name  # the op, not the metadata naming this test


def test_attention_equals_a_numpy_masked_softmax_attention():
    """``jax.nn.dot_product_attention`` (XLA on the CPU) against attention written out in numpy: causal and
    key-padding masks, softmax over the allowed keys, a query with no allowed key (a left pad) finite."""
    config = ModelConfig(TOKENIZER.vocab_size, max_len=16, d_model=16, n_heads=4)
    x = jax.random.normal(jax.random.key(1), (2, 5, 16))
    key_mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]], bool)
    layer = CausalSelfAttention(config)
    params = layer.init(jax.random.key(2), x, jnp.zeros((2, 5), jnp.int32), key_mask, None, 0)
    out, _ = layer.apply(params, x, jnp.zeros((2, 5), jnp.int32), key_mask, None, 0)
    weights = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    qkv = np.asarray(x, np.float64) @ weights["Dense_0"]["kernel"] + weights["Dense_0"]["bias"]
    q, k, v = np.moveaxis(qkv.reshape(2, 5, 3, 4, 4), 2, 0)
    expected = np.zeros((2, 5, 4, 4))
    for b, t, h in np.ndindex(2, 5, 4):
        allowed = [s for s in range(5) if s <= t and key_mask[b, s]]
        scores = np.array([q[b, t, h] @ k[b, s, h] / 2.0 for s in allowed])  # scaled by 1 / sqrt(head dim 4)
        p = np.exp(scores - scores.max()) if allowed else np.ones(5)  # no allowed key: uniform weights
        expected[b, t, h] = (p / p.sum()) @ v[b, allowed or list(range(5)), h]
    expected = expected.reshape(2, 5, 16) @ weights["Dense_1"]["kernel"] + weights["Dense_1"]["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
