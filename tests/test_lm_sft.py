"""Supervised fine-tuning: the loss masks the prompt, a tiny run learns the task, a resumed run equals an
uninterrupted one, and bad input stops with one line."""

import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.io import cli
from purerl.io.checkpoints import CheckpointError
from purerl.io.lm_sft import run_sft
from purerl.lm.dpo import DPOConfig
from purerl.lm.grpo import LMGRPOConfig
from purerl.lm.model import CausalLM, ModelConfig
from purerl.lm.ppo import LMPPOConfig
from purerl.lm.reward_model import RewardModelConfig
from purerl.lm.sft import SFTConfig, make_sft, sft_loss
from purerl.lm.tokenizer import CharTokenizer, encode_batch
from purerl.lm.training import TrainingConfig, optimizer_and_schedule

SMALL = {"task": "reverse", "steps": 30, "batch_size": 16, "warmup_steps": 5, "eval_every": 15, "eval_prompts": 16}


def test_sft_loss_is_the_mean_completion_cross_entropy_and_ignores_the_prompt():
    tokenizer = CharTokenizer()
    model = CausalLM(ModelConfig(tokenizer.vocab_size, max_len=16, d_model=16, n_layers=1, n_heads=2))
    batch = encode_batch(tokenizer, ["ab", "abcd"], ["x", "xyz"], 4, 3)
    params = model.init(jax.random.key(0), jnp.asarray(batch.prompt), jnp.asarray(batch.prompt), batch.prompt_mask)
    loss, _ = sft_loss(params, model, batch)
    tokens = np.concatenate([batch.prompt, batch.completion], axis=1)
    mask = np.concatenate([batch.prompt_mask, batch.completion_mask], axis=1)
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    logits = np.asarray(model.apply(params, tokens, positions, mask).logits, np.float64)
    nll, count = 0.0, 0
    for row in range(2):
        for slot in range(batch.prompt.shape[1], tokens.shape[1]):  # completion tokens only, <eos> included
            if mask[row, slot]:
                log_probs = logits[row, slot - 1] - np.log(np.sum(np.exp(logits[row, slot - 1])))
                nll -= log_probs[tokens[row, slot]]
                count += 1
    assert count == 2 + 4
    np.testing.assert_allclose(loss, nll / count, rtol=1e-5)


@pytest.mark.xdist_group("sentiment_sft")
@pytest.mark.learning
@pytest.mark.timeout(300)
def test_sft_on_a_tiny_model_learns_the_sentiment_grammar(sentiment_sft):
    out, summary = sentiment_sft, json.loads((sentiment_sft / "summary.json").read_text())
    assert summary["eval_at_start"]["validity"] == 0.0 and summary["eval_at_start"]["accuracy"] == 0.0
    assert summary["final_loss"] < 0.6  # from ln(49) = 3.9 at initialisation
    assert summary["eval"]["validity"] > 0.5  # most samples are reviews the grammar can produce
    assert summary["eval"]["accuracy"] > 0.15  # and many are wholly positive (44% of the demonstrations are)
    for name in ("metrics.csv", "evals.csv", "samples.txt", "summary.json", "sft.png", "config.json"):
        assert (out / name).exists()


def test_resumed_sft_equals_an_uninterrupted_run(tmp_path):
    config = SFTConfig(**SMALL, checkpoint_every=10)
    run_sft(config, tmp_path / "whole")
    run_sft(config, tmp_path / "crashed")
    # A crash after step 20: the checkpoint of step 30 and the results never got written.
    shutil.rmtree(tmp_path / "crashed" / "checkpoints" / "30")
    for name in ("metrics.csv", "evals.csv", "summary.json"):
        (tmp_path / "crashed" / name).unlink()
    summary = run_sft(config, tmp_path / "crashed", resume=True)
    assert summary["resumed_from_step"] == 20
    for name in ("metrics.csv", "evals.csv"):
        assert (tmp_path / "crashed" / name).read_text() == (tmp_path / "whole" / name).read_text()


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    run_sft(SFTConfig(**SMALL), tmp_path / "run")
    with pytest.raises(CheckpointError, match="belongs to a run with another config"):
        run_sft(SFTConfig(**SMALL | {"learning_rate": 1e-3}), tmp_path / "run", resume=True)


def fail_if_trained(*args, **kwargs):
    raise AssertionError("training started despite bad input")


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--task", "sorting"], "task must be one of sentiment, addition, reverse, palindrome; got 'sorting'"),
        (["--preset", "huge"], "preset must be one of tiny, small; got 'huge'"),
        (["--warmup-steps", "1000"], "warmup_steps=1000 must be less than the run's 1000 optimiser steps"),
        (["--demo-quality", "2"], "demo_quality must be in [0.0, 1.0], got 2.0"),
        (["--steps", "many"], "--steps: cannot read 'many' as int"),
    ],
)
def test_bad_sft_input_one_line_error_before_training(monkeypatch, capsys, tmp_path, flags, message):
    monkeypatch.setattr("purerl.lm.sft.make_sft", fail_if_trained)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["lm", "sft", "--out", str(tmp_path / "x"), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("purerl: error: ") and message in err and err.count("\n") == 1


def test_cli_sft_resume_refuses_new_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["lm", "sft", "--out", str(out), *(f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items())]) == 0
    assert "SFT on reverse" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["lm", "sft", "--resume", str(out), "--steps", "60"])
    assert exit_info.value.code == 2 and "drop --steps" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["lm", "sft", "--out", str(out), "--task", "reverse"])
    assert f"continue it with purerl lm sft --resume {out}" in capsys.readouterr().err


def plain_rate(config: TrainingConfig, step: int) -> float:
    """Warm-up from peak / W (step 0) to the peak (step W - 1), then a cosine from the peak at step W towards
    min_lr_fraction * peak at step N, one past the last: the schedule written out by hand."""
    peak, warmup, total = config.learning_rate, config.warmup_steps, config.optimizer_steps
    floor = config.min_lr_fraction
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / (total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


@pytest.mark.parametrize(
    "config",
    [
        SFTConfig(task="reverse", steps=12, warmup_steps=4),
        SFTConfig(task="reverse", steps=3, warmup_steps=1, min_lr_fraction=0.0),
        RewardModelConfig(init="unused", pairs=("unused",), steps=7),
        DPOConfig(init="unused", pairs=("unused",), steps=9, warmup_steps=3),
        LMPPOConfig(init="unused", steps=3),  # 4 epochs x 2 minibatches: 24 optimiser steps
        LMGRPOConfig(init="unused", steps=5, epochs=2),
    ],
    ids=["sft", "sft-one-warmup-step", "reward-model", "dpo-warmup", "lm-ppo", "lm-grpo"],
)
def test_every_lm_schedule_learns_at_its_first_and_last_step(config):
    _, schedule = optimizer_and_schedule(config)
    rates = np.array([float(schedule(step)) for step in range(config.optimizer_steps)])
    np.testing.assert_allclose(rates, [plain_rate(config, s) for s in range(config.optimizer_steps)], rtol=1e-5)
    first = config.learning_rate / config.warmup_steps if config.warmup_steps else config.learning_rate
    assert rates[0] == pytest.approx(first, rel=1e-6)
    assert rates[-1] > config.learning_rate * config.min_lr_fraction  # the floor is reached one step after the end


def test_first_sft_step_changes_every_parameter_at_peak_over_warmup():
    config = SFTConfig(**SMALL)
    sft = make_sft(config)
    state = sft.state
    after, metrics = sft.update(state, jax.tree.map(jnp.asarray, sft.sample(state, 0)))
    assert float(metrics["learning_rate"]) == pytest.approx(config.learning_rate / config.warmup_steps, rel=1e-6)
    leaves = zip(jax.tree_util.tree_leaves_with_path(state.params), jax.tree.leaves(after.params), strict=True)
    for (path, before), moved in leaves:
        assert not np.array_equal(before, moved), jax.tree_util.keystr(path)
