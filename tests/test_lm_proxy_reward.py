"""The proxy reward of learned reward models (normalisation on SFT samples, ensemble disagreement penalty) and
the preference-pair rounds (several temperatures, a trained policy's samples, the union of rounds), each
against a plain loop or a hand computation."""

import json
import math

import numpy as np
import pytest

from purerl.io import cli
from purerl.io.config_io import config_from_dict
from purerl.io.lm_align import with_absolute_paths
from purerl.lm.ppo import LMPPOConfig
from purerl.lm.preference_data import (
    PairsConfig,
    load_pair_split,
    load_pairs,
    make_pairs,
    pair_key,
    save_pairs,
    split_pairs,
)
from purerl.lm.proxy_reward import ensemble_score, make_proxy_scorer, score_statistics
from purerl.lm.reward_model import RewardModelConfig
from purerl.lm.sft import SFTConfig, make_sft, model_from_sft
from purerl.lm.tasks import make_task


def test_ensemble_score_matches_a_loop_over_completions_and_members():
    rng = np.random.default_rng(0)
    scores = rng.normal(3.0, 5.0, size=(3, 7))
    reference = rng.normal(3.0, 5.0, size=(3, 50))
    statistics = score_statistics(reference.mean(axis=1), reference.std(axis=1))
    proxy, disagreement = ensemble_score(scores, statistics, penalty=0.5)
    for b in range(7):
        z = []
        for k in range(3):
            mean = sum(reference[k]) / 50
            std = math.sqrt(sum((x - mean) ** 2 for x in reference[k]) / 50)
            z.append((scores[k, b] - mean) / std)
        centre = sum(z) / 3
        spread = math.sqrt(sum((x - centre) ** 2 for x in z) / 3)
        assert disagreement[b] == pytest.approx(spread, rel=1e-5)
        assert proxy[b] == pytest.approx(centre - 0.5 * spread, rel=1e-5, abs=1e-6)
    assert proxy.dtype == np.float32 and disagreement.dtype == np.float32


def test_one_member_without_statistics_is_its_raw_score_and_agrees_with_itself():
    scores = np.array([[1.5, -2.0, 7.0]])
    proxy, disagreement = ensemble_score(scores, penalty=3.0)
    np.testing.assert_allclose(proxy, scores[0])
    np.testing.assert_array_equal(disagreement, 0.0)


def test_normalised_scores_of_the_reference_have_mean_zero_and_std_one():
    reference = np.random.default_rng(1).normal([[10.0], [-4.0]], [[8.0], [0.1]], size=(2, 400))
    proxy, _ = ensemble_score(reference[:1], score_statistics(reference[:1].mean(axis=1), reference[:1].std(axis=1)))
    assert np.mean(proxy) == pytest.approx(0.0, abs=1e-5) and np.std(proxy) == pytest.approx(1.0, rel=1e-5)
    # Members on different scales count alike once normalised: each standardised reference averages to 0.
    both, _ = ensemble_score(reference, score_statistics(reference.mean(axis=1), reference.std(axis=1)))
    assert np.mean(both) == pytest.approx(0.0, abs=1e-5)


def test_a_constant_member_is_refused_by_name():
    with pytest.raises(ValueError, match="reward model 1 gives every SFT sample the same score"):
        score_statistics([0.0, 4.0], [0.8, 0.0])
    with pytest.raises(ValueError, match="reward model 'runs/rm' gives every SFT sample the same score"):
        score_statistics([4.0], [0.0], names=("runs/rm",))
    with pytest.raises(ValueError, match="one mean and one std per member"):
        score_statistics([1.0], [1.0, 2.0])


def test_the_proxy_scorer_penalises_where_the_members_disagree():
    agree = lambda prompts, completions, batch: np.array([1.0, 1.0])  # noqa: E731
    disagree = lambda prompts, completions, batch: np.array([1.0, -1.0])  # noqa: E731
    scorer = make_proxy_scorer([agree, disagree], penalty=2.0)
    np.testing.assert_allclose(scorer([], [], None), [1.0, 0.0 - 2.0 * 1.0])


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--reward-model", "a", "--ensemble-penalty", "1"], "ensemble_penalty=1.0 needs an ensemble"),
    ],
)
def test_proxy_settings_without_their_reward_models_are_one_line_errors(capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["lm", "ppo", "--init", "x", *flags])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, err


def test_path_fields_hold_tuples_and_old_single_path_configs_still_load(tmp_path):
    with pytest.raises(ValueError, match="pairs must be a tuple of paths"):
        RewardModelConfig(init="sft", pairs="runs/pairs")
    with pytest.raises(ValueError, match="reward_model must be a tuple of paths"):
        LMPPOConfig(init="sft", reward_model="runs/rm")
    assert config_from_dict(LMPPOConfig, {"init": "sft", "reward_model": "runs/rm"}).reward_model == ("runs/rm",)
    assert config_from_dict(LMPPOConfig, {"init": "sft", "reward_model": ""}).reward_model == ()
    assert config_from_dict(RewardModelConfig, {"init": "s", "pairs": "a,b"}).pairs == ("a", "b")


def test_pairs_of_several_directories_are_their_union_in_order(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(5)]
    save_pairs(rows[:2], tmp_path / "one.jsonl")
    (tmp_path / "two").mkdir()
    save_pairs(rows[2:], tmp_path / "two" / "pairs.jsonl")
    assert load_pairs([tmp_path / "one.jsonl", str(tmp_path / "two")]) == rows
    with pytest.raises(ValueError, match="no preference pairs at"):
        load_pairs([tmp_path / "one.jsonl", tmp_path / "missing"])


def test_pairs_share_the_prompts_among_temperatures_in_blocks():
    sft_config = SFTConfig(task="sentiment", steps=10, warmup_steps=2)
    model, params = model_from_sft(sft_config, make_sft(sft_config).state.params)
    config = PairsConfig(init="unused", prompts=12, samples_per_prompt=6, temperatures=(0.5, 2.0, 4.0))
    rows = make_pairs(sft_config.task_instance, model, params, config)
    prompts = sft_config.task_instance.prompts(np.random.default_rng([0, 2**31 - 2]), 12)
    for row in rows:
        block = [i for i, p in enumerate(prompts) if p == row["prompt"]][0] // 4
        assert row["temperature"] == config.temperatures[block]
        assert row["chosen_reward"] > row["rejected_reward"]
    assert make_pairs(sft_config.task_instance, model, params, config) == rows  # a pure function of the seed
    with pytest.raises(ValueError, match="temperatures must be one or more finite values > 0"):
        PairsConfig(init="unused", temperatures=(1.0, 0.0))


@pytest.mark.xdist_group("sentiment_sft")
@pytest.mark.learning
@pytest.mark.timeout(400)
def test_a_normalised_reward_model_raises_the_task_reward_and_a_trained_policy_makes_the_next_round(
    sentiment_sft, tmp_path
):
    """The learned-reward pipeline end to end, through the CLI: pairs -> reward model -> PPO on the
    normalised score (which must raise the held-out task reward) -> a second round of pairs sampled from the
    trained policy, whose completions score higher than the SFT policy's."""
    sft = str(sentiment_sft)
    assert cli.main(["lm", "pairs", "--init", sft, "--prompts", "256", "--out", str(tmp_path / "pairs0")]) == 0
    rm = ["lm", "rm", "--init", sft, "--steps", "30", "--eval-every", "30"]
    assert cli.main([*rm, "--pairs", str(tmp_path / "pairs0"), "--out", str(tmp_path / "rm0")]) == 0
    ppo = ["lm", "ppo", "--init", sft, "--prompts-per-step", "32", "--steps", "10", "--eval-every", "10"]
    ppo += ["--reward-model", str(tmp_path / "rm0")]  # normalised on SFT samples by default
    assert cli.main([*ppo, "--out", str(tmp_path / "ppo")]) == 0
    summary = json.loads((tmp_path / "ppo" / "summary.json").read_text())
    assert "normalised on SFT samples" in summary["scored_by"]
    assert summary["eval"]["reward"] > summary["eval_at_start"]["reward"] + 0.3, summary
    # Standardised on SFT samples, the SFT policy's held-out proxy score is near 0; training raises it.
    assert summary["eval_at_start"]["proxy_score"] == pytest.approx(0.0, abs=0.25)
    assert summary["eval"]["proxy_score"] > 0.5

    round_one = ["lm", "pairs", "--init", sft, "--policy", str(tmp_path / "ppo"), "--prompts", "256"]
    assert cli.main([*round_one, "--temperatures", "1,1.5", "--out", str(tmp_path / "pairs1")]) == 0
    first, second = load_pairs([tmp_path / "pairs0"]), load_pairs([tmp_path / "pairs1"])
    mean_reward = lambda rows: np.mean([row["chosen_reward"] + row["rejected_reward"] for row in rows])  # noqa: E731
    assert mean_reward(second) > mean_reward(first) + 0.3
    assert {row["temperature"] for row in second} == {1.0, 1.5}
    union = f"{tmp_path / 'pairs0'},{tmp_path / 'pairs1'}"
    both = ["lm", "rm", "--init", sft, "--steps", "5", "--eval-every", "5", "--pairs", union]
    assert cli.main([*both, "--out", str(tmp_path / "rm1")]) == 0
    saved = json.loads((tmp_path / "rm1" / "config.json").read_text())["pairs"]
    assert saved == [str(tmp_path / "pairs0"), str(tmp_path / "pairs1")]
    with pytest.raises(SystemExit):  # a reward model is not a policy
        cli.main(["lm", "pairs", "--init", sft, "--policy", str(tmp_path / "rm0"), "--out", str(tmp_path / "x")])


def test_a_pair_and_its_copies_fall_on_one_side_of_the_split():
    rows = [{"prompt": f"p{i % 6}", "chosen": "a", "rejected": "b", "copy": i} for i in range(18)]  # 6 pairs x 3
    train, held_out = split_pairs(rows, 0.5, seed=0)
    train_keys, held_out_keys = {pair_key(r) for r in train}, {pair_key(r) for r in held_out}
    assert not train_keys & held_out_keys and len(train_keys) == len(held_out_keys) == 3
    assert len(train) == len(held_out) == 9  # every copy kept, with its pair
    assert split_pairs(rows, 0.5, seed=0) == (train, held_out)
    with pytest.raises(ValueError, match="of 1 distinct pairs leaves no train or no held-out pair"):
        split_pairs(rows[:1] * 5, 0.5, seed=0)


def test_pairs_of_another_task_and_empty_pair_files_are_refused(tmp_path):
    save_pairs([{"prompt": "abc", "chosen": "cba", "rejected": "abc", "task": "reverse"}] * 4, tmp_path / "r.jsonl")
    with pytest.raises(ValueError, match="include reverse pairs; this run is on sentiment"):
        load_pair_split([tmp_path / "r.jsonl"], 0.5, 0, make_task("sentiment"))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty.jsonl' holds no preference pairs"):
        load_pairs([tmp_path / "empty.jsonl"])


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["ppo", "--init", "{sft}", "--reward-model", "{sft}"],
            "--reward-model '{sft}' is a sft run, not a purerl lm rm run",
        ),
        (["ppo", "--init", "{sft}", "--reward-model", "{sft}/config.json"], "is not a purerl lm rm run directory"),
        (
            ["grpo", "--init", "{sft}", "--reward-model", "{missing}"],
            "--reward-model '{missing}' is not a purerl lm rm",
        ),
        (["pairs", "--init", "{sft}", "--policy", "{sft}"], "--policy '{sft}' is a sft run, not a purerl lm ppo or"),
        (["ppo", "--init", "{sft}", "--reward-model", "{sft},"], "--reward-model: an empty item in"),
        (["ppo", "--init", "x", "--reward-model", "a,b", "--ensemble-penalty", "inf"], "must be finite and >= 0"),
        (["pairs", "--init", "x", "--temperatures", "1,inf"], "temperatures must be one or more finite values > 0"),
        (["pairs", "--init", "x", "--prompts", "2", "--temperatures", "1,2,3"], "cannot be shared among 3"),
    ],
)
def test_bad_reward_model_and_pair_settings_are_one_line_errors(tmp_path, capsys, argv, message):
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "config.json").write_text(json.dumps({"_algorithm": "sft", "task": "sentiment"}))
    names = {"sft": str(sft.resolve()), "missing": str((tmp_path / "missing").resolve())}
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["lm", *(part.format(**names) for part in argv), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.format(**names) in err and err.count("\n") == 1, err


def test_a_new_run_records_absolute_paths_to_the_runs_it_reads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = with_absolute_paths(LMPPOConfig(init="runs/sft", reward_model=("runs/rm", str(tmp_path / "rm2"))))
    assert config.init == str(tmp_path / "runs" / "sft")
    assert config.reward_model == (str(tmp_path / "runs" / "rm"), str(tmp_path / "rm2"))
    assert with_absolute_paths(PairsConfig(init="sft")).policy == ""  # an unset path stays unset


def test_list_fields_refuse_a_scalar_in_a_config_file():
    with pytest.raises(ValueError, match="config field temperatures takes a list, got 0.5"):
        config_from_dict(PairsConfig, {"init": "sft", "temperatures": 0.5})
