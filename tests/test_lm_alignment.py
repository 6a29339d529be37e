"""Reward model, DPO, KL-penalised PPO and GRPO on the toy LM: each piece against a plain reference, the
PPO first-minibatch sanity, masking, and tiny end-to-end runs that must improve the task's reward."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from preference_rows import sentiment_pairs

from purerl.io import cli
from purerl.io.lm_align import run_method, run_pairs
from purerl.lm.dpo import DPOConfig, make_dpo
from purerl.lm.grpo import GroupExperience, LMGRPOConfig, grpo_objective, make_lm_grpo, unique_per_group
from purerl.lm.model import completion_log_probs
from purerl.lm.ppo import LMPPOConfig, kl_shaped_rewards, make_lm_ppo, token_advantages
from purerl.lm.preference_data import PairsConfig, save_pairs
from purerl.lm.reward_model import RewardModelConfig, make_reward_model, pearson_correlation
from purerl.lm.rollout import last_token_scores
from purerl.lm.sft import SFTConfig, make_sft, model_from_sft
from purerl.lm.tokenizer import EOS, PAD, Batch, CharTokenizer, encode_batch

TOKENIZER = CharTokenizer()
REVERSE = SFTConfig(task="reverse", steps=10, warmup_steps=2)


def untrained_policy(config: SFTConfig = REVERSE):
    return config, make_sft(config).state.params


def test_kl_shaped_rewards_match_a_loop():
    rng = np.random.default_rng(0)
    log_probs, ref = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)
    scores = np.array([0.5, -1.0, 2.0])
    rewards, kl = kl_shaped_rewards(jnp.asarray(scores), jnp.asarray(log_probs), jnp.asarray(ref), mask, 0.1)
    expected = np.zeros((3, 5))
    for b in range(3):
        length = mask[b].sum()
        for t in range(length):
            expected[b, t] = -0.1 * (log_probs[b, t] - ref[b, t])
        expected[b, length - 1] += scores[b]
    np.testing.assert_allclose(rewards, expected, atol=1e-6)
    np.testing.assert_allclose(kl, (log_probs - ref) * mask, atol=1e-6)


def test_token_advantages_match_a_per_sequence_gae_loop():
    rng = np.random.default_rng(1)
    rewards, values = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], bool)
    rewards = rewards * mask
    advantages, returns = token_advantages(jnp.asarray(rewards), jnp.asarray(values), mask, 1.0, 0.95)
    for b in range(3):
        length, running = mask[b].sum(), 0.0
        for t in reversed(range(length)):
            next_value = values[b, t + 1] if t + 1 < length else 0.0  # the completion ends: no bootstrap
            delta = rewards[b, t] + next_value - values[b, t]
            running = delta + 0.95 * running
            assert advantages[b, t] == pytest.approx(running, abs=1e-5)
            assert returns[b, t] == pytest.approx(running + values[b, t], abs=1e-5)
        assert np.all(np.asarray(advantages[b, length:]) == 0)  # padding gets nothing


def test_reward_model_reads_the_score_at_the_last_real_token():
    sft_config, params = untrained_policy()
    model, params = model_from_sft(sft_config, params, "reward", jax.random.key(0))
    batch = encode_batch(TOKENIZER, ["abc", "hello"], ["cba", "o"], 16, 16)
    tokens = np.concatenate([batch.prompt, batch.completion], axis=1)
    mask = np.concatenate([batch.prompt_mask, batch.completion_mask], axis=1)
    scalar = np.asarray(model.apply(params, tokens, np.maximum(np.cumsum(mask, 1) - 1, 0), mask).scalar)
    eos_slots = [batch.prompt.shape[1] + list(row).index(EOS) for row in batch.completion]
    expected = [scalar[row, slot] for row, slot in enumerate(eos_slots)]
    np.testing.assert_allclose(last_token_scores(model, params, batch), expected, atol=1e-5)


def test_objectives_ignore_tokens_after_eos_and_pads():
    sft_config, params = untrained_policy()
    model, _ = model_from_sft(sft_config, params)
    batch = Batch(*map(jnp.asarray, encode_batch(TOKENIZER, ["abc", "hello"], ["cba", "o"], 16, 16)))
    garbage = jnp.where(batch.completion_mask, batch.completion, 7)  # junk where the mask is off
    other = batch._replace(completion=garbage)
    assert not np.array_equal(garbage, batch.completion) and np.all(batch.completion[~batch.completion_mask] == PAD)
    config = LMGRPOConfig(init="unused", beta=0.1)

    def loss_and_grads(b: Batch):
        old = completion_log_probs(model, params, b) - 0.05 * b.completion_mask  # ratio != 1 on valid tokens
        exp = GroupExperience(b, old, old + 0.1 * b.completion_mask, jnp.array([1.0, -1.0]))
        return jax.value_and_grad(lambda p: grpo_objective(p, model, config, exp)[0])(params)

    (loss, grads), (other_loss, other_grads) = loss_and_grads(batch), loss_and_grads(other)
    assert float(loss) == pytest.approx(float(other_loss), abs=1e-6)
    for g, h in zip(jax.tree.leaves(grads), jax.tree.leaves(other_grads), strict=True):
        np.testing.assert_allclose(g, h, atol=1e-6)


@pytest.mark.parametrize("estimator", ["k2", "k3"])
def test_grpo_kl_term_gradient_is_the_exact_kl_gradient(estimator):
    """One-token completions enumerating the whole vocabulary after one prompt, zero advantages, beta 1:
    the loss gradient averaged exactly under pi equals the closed-form gradient of KL(pi || pi_ref) for k2
    and of KL(pi_ref || pi) for k3 (purerl.core.kl), the two differing here."""
    sft_config, params = untrained_policy()
    model, _ = model_from_sft(sft_config, params)
    vocab = TOKENIZER.vocab_size
    prompts = encode_batch(TOKENIZER, ["abc"] * vocab, [""] * vocab, 16, 0)
    batch = Batch(*map(jnp.asarray, prompts))._replace(
        completion=jnp.arange(vocab, dtype=jnp.int32)[:, None], completion_mask=jnp.ones((vocab, 1), bool)
    )
    ref_log_probs = jax.nn.log_softmax(3.0 * jax.random.normal(jax.random.key(1), (vocab,)))  # far from pi
    config = LMGRPOConfig(init="unused", beta=1.0, kl_estimator=estimator)

    def log_pi(p):  # [V]: log pi(v | prompt) for every token v
        return completion_log_probs(model, p, batch, config.temperature)[:, 0]

    def loss_at(p, v):  # the loss of the one-completion batch "prompt -> v"
        one = jax.tree.map(lambda x: x[v][None], batch)
        old = jax.lax.stop_gradient(log_pi(p))[v][None, None]
        exp = GroupExperience(one, old, ref_log_probs[v][None, None], jnp.zeros(1))
        return grpo_objective(p, model, config, exp)[0]

    pi = jnp.exp(jax.jit(log_pi)(params))
    assert float(pi.sum()) == pytest.approx(1.0, abs=1e-5)  # the enumeration covers the support
    # sum_v pi(v) grad loss_v, as the gradient of the pi-weighted sum of the per-token losses (one backward pass)
    weighted = lambda p: jnp.sum(pi * jax.vmap(loss_at, in_axes=(None, 0))(p, jnp.arange(vocab)))  # noqa: E731
    expected_grad = jax.jit(jax.grad(weighted))(params)

    def kl(p, reverse: bool):
        log_p, log_q = (ref_log_probs, log_pi(p)) if reverse else (log_pi(p), ref_log_probs)
        return jnp.sum(jnp.exp(log_p) * (log_p - log_q))

    kl_grad = jax.jit(jax.grad(kl), static_argnums=1)
    exact, other = kl_grad(params, estimator == "k3"), kl_grad(params, estimator == "k2")
    flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])  # noqa: E731
    np.testing.assert_allclose(flat(expected_grad), flat(exact), rtol=1e-3, atol=1e-6)
    assert np.abs(flat(exact) - flat(other)).max() > 0.1 * np.abs(flat(exact)).max()
    with pytest.raises(ValueError, match=r"kl_estimator='k1' cannot be a loss term"):
        LMGRPOConfig(init="unused", kl_estimator="k1")


def test_ppo_first_minibatch_has_ratio_one_no_kl_and_no_clipping():
    sft_config, params = untrained_policy()
    config = LMPPOConfig(init="unused", prompts_per_step=8, minibatches=2, epochs=2, steps=3)
    spread_scores = lambda prompts, completions, batch: np.linspace(-1.0, 1.0, len(prompts))  # noqa: E731
    ppo = make_lm_ppo(config, sft_config, params, spread_scores)
    state, metrics = ppo.train_step(ppo.state, 0)
    metrics = {name: float(value) for name, value in metrics.items()}
    assert metrics["first/ratio"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["first/approx_kl"] == pytest.approx(0.0, abs=1e-10)
    assert metrics["first/clip_fraction"] == 0.0
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy is the reference at step 0
    assert metrics["rlhf_reward"] == pytest.approx(metrics["score"], abs=1e-6)
    assert metrics["ratio"] != 1.0  # later minibatches did move the policy


def test_adaptive_kl_controller_follows_the_ziegler_update():
    sft_config, params = untrained_policy()
    config = LMPPOConfig(init="unused", prompts_per_step=8, steps=3, kl_target=1.0, kl_horizon=100)
    ppo = make_lm_ppo(config, sft_config, params, None)
    state, metrics = ppo.train_step(ppo.state, 0)  # KL = 0 at step 0: error clipped at -0.2
    assert float(state.kl_coef) == pytest.approx(0.04 * (1 - 0.2 * 8 / 100), rel=1e-5)


def test_grpo_reports_group_statistics():
    assert unique_per_group(["a", "a", "b", "c", "x", "x", "x", "x"], 4) == pytest.approx((3 / 4 + 1 / 4) / 2)
    sft_config, params = untrained_policy()
    config = LMGRPOConfig(init="unused", prompts_per_step=2, group_size=4, steps=2)
    grpo = make_lm_grpo(config, sft_config, params, None)
    _, metrics = grpo.train_step(grpo.state, 0)
    metrics = {name: float(value) for name, value in metrics.items()}
    assert metrics["ratio"] == pytest.approx(1.0, abs=1e-6)  # one epoch, one minibatch: on-policy
    assert 0.0 <= metrics["zero_spread_fraction"] <= 1.0 and metrics["kl"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("score", [1 / 3, 0.6, 123.4])
def test_grpo_update_on_equal_scores_moves_nothing(score):
    """Groups whose completions all score the same (a fraction float32 cannot represent, or a large value)
    give exactly zero advantage: with beta 0 the gradient is exactly 0 and no parameter changes."""
    sft_config, params = untrained_policy()
    config = LMGRPOConfig(init="unused", prompts_per_step=2, group_size=8, steps=2, beta=0.0)
    grpo = make_lm_grpo(config, sft_config, params, None)
    rollout, key = grpo.sample(grpo.state, 0)
    scores = jnp.full(config.completions_per_step, score, jnp.float32)
    state, metrics = grpo.update(grpo.state, rollout.batch, scores, key)
    assert float(metrics["grad_norm"]) == 0.0 and float(metrics["zero_spread_fraction"]) == 1.0
    for before, after in zip(jax.tree.leaves(params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(before, after)


def test_reward_correlation_is_pearson_and_undefined_without_spread():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    expected = np.sum((x - x.mean()) * (y - y.mean())) / np.sqrt(
        np.sum((x - x.mean()) ** 2) * np.sum((y - y.mean()) ** 2)
    )
    assert pearson_correlation(x, y) == pytest.approx(expected)
    assert np.isnan(pearson_correlation(np.full(8, np.float32(1 / 3)), np.arange(8.0)))  # was a residue's r


def test_reward_model_learns_a_known_preference(tmp_path):
    save_pairs(sentiment_pairs(200), tmp_path / "pairs.jsonl")
    sft_config, params = untrained_policy(SFTConfig(task="sentiment", steps=10, warmup_steps=2))
    config = RewardModelConfig(init="unused", pairs=(str(tmp_path),), steps=60, learning_rate=3e-3)
    reward_model = make_reward_model(config, sft_config, params)
    assert reward_model.policy is None  # it trains no policy
    state = reward_model.state
    for step in range(config.steps):
        state, metrics = reward_model.train_step(state, step)
    evaluation = reward_model.evaluate(state)
    assert evaluation["true_accuracy"] > 0.95 and evaluation["reward_correlation"] > 0.8


def test_dpo_at_initialisation_is_ln2_with_zero_rewards_and_learns(tmp_path):
    save_pairs(sentiment_pairs(200), tmp_path / "pairs.jsonl")
    sft_config, params = untrained_policy(SFTConfig(task="sentiment", steps=10, warmup_steps=2))
    config = DPOConfig(init="unused", pairs=(str(tmp_path),), steps=40, learning_rate=1e-3)
    dpo = make_dpo(config, sft_config, params)
    start = dpo.evaluate(dpo.state)
    assert start["held_out/loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert start["held_out/rewards/chosen"] == 0.0 and start["held_out/rewards/rejected"] == 0.0
    state = dpo.state
    for step in range(config.steps):
        state, metrics = dpo.train_step(state, step)
    assert dpo.evaluate(state)["preference_accuracy"] > 0.9


def test_bad_alignment_input_one_line_error(capsys, tmp_path):
    for flags, message in (
        (["ppo", "--out", str(tmp_path / "p")], "--init is required"),
        (["grpo", "--init", "x", "--group-size", "1"], "group_size must be >= 2"),
        (["dpo", "--init", "x", "--pairs", "y", "--loss-type", "kto"], "loss_type must be one of"),
        (["ppo", "--init", str(tmp_path / "nothing")], "is not a purerl lm sft run directory"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["lm", *flags])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.learning
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "algorithm,config_cls,settings",
    [
        ("ppo", LMPPOConfig, {"prompts_per_step": 32, "steps": 8}),
        ("grpo", LMGRPOConfig, {"prompts_per_step": 4, "group_size": 8}),
    ],
    ids=["ppo", "grpo"],
)
@pytest.mark.xdist_group("sentiment_sft")
def test_policy_gradient_improves_the_task_reward(sentiment_sft, tmp_path, algorithm, config_cls, settings):
    settings = {"steps": 15} | settings  # PPO gains +0.76 in 8 steps (+0.85 in 15), GRPO +0.55 in 15
    config = config_cls(init=str(sentiment_sft), eval_every=settings["steps"], **settings)
    summary = run_method(algorithm, config, tmp_path / algorithm)
    start, end = summary["eval_at_start"], summary["eval"]
    assert end["reward"] > start["reward"] + 0.3, (start, end)
    assert end["kl_to_reference"] > 0.0


@pytest.mark.xdist_group("sentiment_sft")
@pytest.mark.learning
@pytest.mark.timeout(300)
def test_pairs_then_dpo_and_reward_model_on_the_sft_policy(sentiment_sft, tmp_path):
    sft = str(sentiment_sft)
    pairs = run_pairs(PairsConfig(init=sft, prompts=256), tmp_path / "pairs")
    assert pairs["pairs"] > 100 and pairs["mean_chosen_reward"] > pairs["mean_rejected_reward"]
    # Sized to their margins: 30 reward-model steps reach 0.96 held-out accuracy, 15 DPO steps 0.90.
    rm = run_method("rm", RewardModelConfig(init=sft, pairs=(str(tmp_path / "pairs"),), steps=30), tmp_path / "rm")
    assert rm["eval"]["true_accuracy"] > 0.8
    dpo = run_method(
        "dpo",
        DPOConfig(init=sft, pairs=(str(tmp_path / "pairs"),), steps=15, eval_every=15, learning_rate=1e-4),
        tmp_path / "dpo",
    )
    assert dpo["eval"]["preference_accuracy"] > 0.7
    assert dpo["eval"]["reward"] > dpo["eval_at_start"]["reward"]
