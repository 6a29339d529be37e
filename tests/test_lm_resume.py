"""Every language-model method resumes to the run it would have been without the stop, through the config
it saved (whose tuple fields, the pairs and the reward models, come back from JSON as lists)."""

import math
import re
import shutil
from dataclasses import replace

import pytest
from preference_rows import sentiment_pairs
from reference_results import read_columns

from purerl.io.checkpoints import CheckpointError, RunCheckpoints
from purerl.io.lm_align import dpo_trainer, run_method
from purerl.io.lm_sft import run_sft
from purerl.lm.dpo import DPOConfig
from purerl.lm.grpo import LMGRPOConfig
from purerl.lm.ppo import LMPPOConfig
from purerl.lm.preference_data import save_pairs
from purerl.lm.reward_model import RewardModelConfig
from purerl.lm.sft import SFTConfig

SMALL = {"steps": 4, "eval_every": 2, "eval_prompts": 8, "samples_shown": 1, "checkpoint_every": 2}


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A tiny SFT run, written pairs and a reward model on them."""
    root = tmp_path_factory.mktemp("resume")
    run_sft(SFTConfig(task="sentiment", steps=3, warmup_steps=1, eval_every=3, eval_prompts=8), root / "sft")
    rows = sentiment_pairs(20)
    (root / "pairs").mkdir()
    save_pairs(rows, root / "pairs" / "pairs.jsonl")
    rm = RewardModelConfig(init=str(root / "sft"), pairs=(str(root / "pairs"),), reference_prompts=8, **SMALL)
    run_method("rm", rm, root / "rm")
    return root


def configs(root):
    init, pairs, rm = str(root / "sft"), (str(root / "pairs"),), (str(root / "rm"),)
    return {
        "rm": RewardModelConfig(init=init, pairs=pairs, reference_prompts=8, **SMALL),
        "dpo": DPOConfig(init=init, pairs=pairs, **SMALL),
        "ppo": LMPPOConfig(init=init, reward_model=rm, prompts_per_step=4, minibatches=2, **SMALL),
        "grpo": LMGRPOConfig(init=init, prompts_per_step=2, group_size=2, **SMALL),
    }


@pytest.mark.timeout(300)
@pytest.mark.parametrize("algorithm", ["rm", "dpo", "ppo", "grpo"])
def test_a_stopped_run_resumes_to_the_uninterrupted_one(start, tmp_path, algorithm):
    config = configs(start)[algorithm]
    run_method(algorithm, config, tmp_path / "whole")
    run_method(algorithm, config, tmp_path / "stopped")
    # Stopped after step 4's evaluation: its checkpoint and the results never got written.
    shutil.rmtree(tmp_path / "stopped" / "checkpoints" / "4")
    for name in ("metrics.csv", "evals.csv", "summary.json"):
        (tmp_path / "stopped" / name).unlink()
    summary = run_method(algorithm, config, tmp_path / "stopped", resume=True)
    assert summary["resumed_from_step"] == 2
    assert summary["run_train_seconds"] > summary["train_seconds"] > 0  # the first process's seconds, then these
    for name in ("metrics.csv", "evals.csv", "samples.txt"):  # step 4's samples once, not twice
        assert (tmp_path / "stopped" / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    if algorithm == "rm":  # a finished run evaluated again trains nothing: it keeps the whole run's time, no rate
        again = run_method(algorithm, config, tmp_path / "stopped", resume=True)
        assert again["tokens_per_second"] is None and again["train_seconds"] == 0.0
        assert again["run_train_seconds"] == summary["run_train_seconds"]  # what the last checkpoint recorded
    with pytest.raises(CheckpointError, match="belongs to a run with another config"):
        run_method(
            algorithm, replace(config, learning_rate=2 * config.learning_rate), tmp_path / "stopped", resume=True
        )


@pytest.mark.timeout(300)
def test_a_checkpoint_from_before_a_metric_existed_resumes_with_nan_for_its_steps(start, tmp_path):
    """A step metric and an eval metric added since have no values for what the checkpoint restored: NaN there,
    the steps and evaluations after it as the uninterrupted run's (a missing one failed the resume)."""
    config = configs(start)["dpo"]
    run_method("dpo", config, tmp_path / "whole")
    run_method("dpo", config, tmp_path / "old")
    like = dpo_trainer(config).init_state
    state, history, meta = RunCheckpoints(tmp_path / "old" / "checkpoints").restore(2, like)
    del history["rewards/margins"], history["eval/kl_to_reference"]
    shutil.rmtree(tmp_path / "old" / "checkpoints")
    RunCheckpoints(tmp_path / "old" / "checkpoints").save(2, state, history, meta)
    run_method("dpo", config, tmp_path / "old", resume=True)
    # restored: steps 1-2 of metrics.csv, the evaluations at steps 0 and 2 of evals.csv
    for name, missing, restored in (("metrics.csv", "rewards/margins", 2), ("evals.csv", "kl_to_reference", 2)):
        whole, old = read_columns(tmp_path / "whole" / name), read_columns(tmp_path / "old" / name)
        assert old.keys() == whole.keys()
        for column, values in whole.items():
            if column == missing:
                assert all(math.isnan(x) for x in old[column][:restored]), old[column]
                assert old[column][restored:] == values[restored:]
            else:
                assert old[column] == values, (name, column)


@pytest.mark.timeout(300)
def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(start, tmp_path):
    config = configs(start)["grpo"]
    run_method("grpo", config, tmp_path / "whole")
    run_method("grpo", config, tmp_path / "killed")
    for step in ("2", "4"):
        shutil.rmtree(tmp_path / "killed" / "checkpoints" / step)
    for name in ("metrics.csv", "evals.csv", "summary.json"):
        (tmp_path / "killed" / name).unlink()
    summary = run_method("grpo", config, tmp_path / "killed", resume=True)
    assert summary["resumed_from_step"] == 0
    for name in ("metrics.csv", "evals.csv", "samples.txt"):
        assert (tmp_path / "killed" / name).read_text() == (tmp_path / "whole" / name).read_text(), name


@pytest.mark.timeout(300)
def test_a_resume_refuses_inputs_changed_since(start, tmp_path):
    """An LM resume compared only its config: it went on with other preference pairs, or from an SFT run
    trained again in the same directory, without a word."""
    sft, pairs = tmp_path / "sft", tmp_path / "pairs"
    shutil.copytree(start / "sft", sft)
    shutil.copytree(start / "pairs", pairs)
    config = DPOConfig(init=str(sft), pairs=(str(pairs),), **SMALL)
    run_method("dpo", config, tmp_path / "dpo")
    save_pairs(sentiment_pairs(21), pairs / "pairs.jsonl")
    changed = rf"other inputs: input pairs {re.escape(str(pairs))}/pairs.jsonl changed since \(SHA-256 "
    with pytest.raises(CheckpointError, match=changed):
        run_method("dpo", config, tmp_path / "dpo", resume=True)
    shutil.copyfile(start / "pairs" / "pairs.jsonl", pairs / "pairs.jsonl")  # the same bytes again: accepted
    assert run_method("dpo", config, tmp_path / "dpo", resume=True)["resumed_from_step"] == 4
    shutil.rmtree(sft)
    run_sft(SFTConfig(task="sentiment", steps=3, warmup_steps=1, eval_every=3, eval_prompts=8, seed=1), sft)
    with pytest.raises(CheckpointError, match=rf"other inputs: input init {re.escape(str(sft))} changed since"):
        run_method("dpo", config, tmp_path / "dpo", resume=True)
