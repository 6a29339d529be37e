"""``purerl lm pairs|rm|dpo|ppo|grpo``: the methods that start from an SFT run, as ``LMTrainer``s for the
shared run driver (``purerl.io.lm_run``), plus the one-shot preference-pair job.

    purerl lm sft   --task sentiment --out runs/sft
    purerl lm pairs --init runs/sft --out runs/pairs          # k samples per prompt, best vs worst
    purerl lm rm    --init runs/sft --pairs runs/pairs --out runs/rm
    purerl lm dpo   --init runs/sft --pairs runs/pairs --out runs/dpo
    purerl lm ppo   --init runs/sft --out runs/ppo [--reward-model runs/rm]
    purerl lm grpo  --init runs/sft --out runs/grpo [--reward-model runs/rm]

Every policy method is evaluated by ``purerl.lm.evaluation`` against the SFT policy as reference, so its
``evals.csv`` holds the task reward, validity, accuracy, diversity and the KL to the SFT start.
"""

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import jax

from purerl.core.files import file_digest
from purerl.core.streams import seed_streams, step_key
from purerl.io.checkpoints import CheckpointError, RunCheckpoints
from purerl.io.config_io import config_from_dict, save_config
from purerl.io.lm_run import LMTrainer, load_lm_config, run_directory_values, run_lm
from purerl.io.lm_sft import load_sft_config
from purerl.io.run import environment_info
from purerl.io.stopping import DEFAULT_STOP_GRACE
from purerl.lm.dpo import DPO_METRICS, DPOConfig, make_dpo
from purerl.lm.evaluation import POLICY_METRICS, Evaluation, make_evaluate
from purerl.lm.grpo import GRPO_METRICS, LMGRPOConfig, make_lm_grpo
from purerl.lm.model import count_params
from purerl.lm.ppo import PPO_METRICS, LMPPOConfig, make_lm_ppo
from purerl.lm.preference_data import PairsConfig, make_pairs, save_pairs
from purerl.lm.proxy_reward import make_proxy_scorer, score_statistics
from purerl.lm.reward_model import (
    REWARD_MODEL_EVAL_METRICS,
    REWARD_MODEL_METRICS,
    RewardModelConfig,
    RewardModelState,
    make_reward_model,
    reward_model_start,
)
from purerl.lm.rollout import Scorer, reward_model_scorer
from purerl.lm.sft import SFTConfig, make_sft, model_from_sft, sft_model
from purerl.lm.training import LMMethod


def restore_params(run_dir: Path, make_like_state: Callable[[], Any]) -> Any:
    """The state of ``run_dir``'s newest checkpoint (a run must have finished or saved one), shaped like the
    output of ``make_like_state``, which is only traced (``jax.eval_shape``): it computes and draws nothing."""
    checkpoints = RunCheckpoints(Path(run_dir) / "checkpoints")
    latest = checkpoints.latest_step()
    if latest is None:
        raise CheckpointError(f"{run_dir}: no checkpoint to start from (did the run finish?)")
    return checkpoints.restore(latest, jax.eval_shape(make_like_state))[0]


def load_sft_policy(init: str) -> tuple[SFTConfig, Any]:
    """``(config, params)`` of the SFT run in ``init``."""
    path = Path(init)
    config = load_lm_config(path, "sft", SFTConfig, flag="init")
    return config, restore_params(path, lambda: make_sft(config).state).params


RUN_PATH_FIELDS = ("init", "policy", "pairs", "reward_model")


def with_absolute_paths(config: Any) -> Any:
    """``config`` with its paths to other runs (``RUN_PATH_FIELDS``) made absolute, so that the run it starts
    finds them again from any working directory (a relative path was read from wherever the reader stood)."""
    changes: dict[str, Any] = {}
    for name in RUN_PATH_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, tuple):
            changes[name] = tuple(str(Path(path).resolve()) for path in value)
        elif value:
            changes[name] = str(Path(value).resolve())
    return dataclasses.replace(config, **changes)


def run_inputs(config: Any) -> dict[str, str]:
    """What a run of ``config`` reads, each with a SHA-256, so that a resume refuses inputs changed since: the
    runs it starts from or scores with (``init``, ``policy``, ``reward_model``) by the state saved in their
    newest checkpoint (``purerl.io.checkpoints.state_digest``), the preference pairs by their files' bytes."""
    inputs = {}
    for name in ("init", "policy", "reward_model"):
        value = getattr(config, name, None) or ()
        for path in value if isinstance(value, tuple) else (value,):
            checkpoints = RunCheckpoints(Path(path) / "checkpoints")
            step = checkpoints.latest_step()
            inputs[f"{name} {path}"] = "none" if step is None else checkpoints.meta(step)["state_digest"]
    for path in map(Path, getattr(config, "pairs", ()) or ()):
        file = path / "pairs.jsonl" if path.is_dir() else path
        inputs[f"pairs {file}"] = file_digest(file)
    return inputs


def check_run_paths(config: Any) -> None:
    """Each run ``config`` reads is a run of the right kind (one line naming the flag otherwise), checked
    before anything is restored or compiled: ``init`` an SFT run, ``reward_model`` reward-model runs,
    ``policy`` a PPO, GRPO or DPO run."""
    run_directory_values(Path(config.init), "init", ("sft",))
    for path in getattr(config, "reward_model", ()):
        run_directory_values(Path(path), "reward-model", ("rm",))
    if getattr(config, "policy", ""):
        run_directory_values(Path(config.policy), "policy", POLICY_ALGORITHMS)


def require_same_sft(flag: str, run: str, init: str, sft_config: SFTConfig) -> None:
    """``run`` (given as ``--flag``) must have started from an SFT run equal to ``sft_config``."""
    if load_sft_config(Path(init)) != sft_config:
        raise ValueError(f"--{flag} {run!r} was trained from another SFT run ({init})")


def load_reward_model(path: str, sft_config: SFTConfig, sft_params) -> tuple[Scorer, dict[str, Any]]:
    """The scorer of the trained reward model in the ``purerl lm rm`` run ``path``, and its final evaluation."""
    config = load_lm_config(Path(path), "rm", RewardModelConfig, flag="reward-model")
    require_same_sft("reward-model", path, config.init, sft_config)

    def start() -> RewardModelState:  # only traced (restore_params): it splits and draws nothing
        return reward_model_start(config, sft_config, sft_params, seed_streams(config.seed).head)[1]

    params = restore_params(Path(path), start).params
    summary = Path(path) / "summary.json"
    evaluation = json.loads(summary.read_text())["eval"] if summary.exists() else {}
    return reward_model_scorer(sft_model(sft_config, "reward"), params), evaluation


def load_scorer(config: Any, sft_config: SFTConfig, sft_params) -> tuple[Scorer | None, str]:
    """What a policy-gradient ``config`` trains on (None: the task's verifiable reward) and its description:
    the reward models of ``config.reward_model``, each standardised by its score statistics on SFT samples
    if ``normalize_reward``, combined with ``ensemble_penalty`` (``purerl.lm.proxy_reward``)."""
    if not config.reward_model:
        return None, "task reward"
    loaded = [load_reward_model(path, sft_config, sft_params) for path in config.reward_model]
    members, evaluations = [member for member, _ in loaded], [evaluation for _, evaluation in loaded]
    statistics = None
    if config.normalize_reward:  # the task's reward (no reward model) is used as it is
        for path, evaluation in zip(config.reward_model, evaluations, strict=True):
            if "sft_score_std" not in evaluation:
                raise ValueError(
                    f"--reward-model {path!r} reports no score statistics on SFT samples (an unfinished run, or "
                    "one from before they were measured): finish or retrain it, or pass --normalize-reward false"
                )
        statistics = score_statistics(
            [evaluation["sft_score_mean"] for evaluation in evaluations],
            [evaluation["sft_score_std"] for evaluation in evaluations],
            config.reward_model,
        )
    scored_by = f"reward model {config.reward_model[0]}"
    if len(members) > 1:
        scored_by = f"an ensemble of {len(members)} reward models (penalty {config.ensemble_penalty:g} x their std)"
    normalised = ", normalised on SFT samples" if config.normalize_reward else ""
    return make_proxy_scorer(members, statistics, config.ensemble_penalty), scored_by + normalised


POLICY_ALGORITHMS = ("ppo", "grpo", "dpo")


def load_run_policy(run: str, sft_config: SFTConfig, sft_params) -> Any:
    """The policy parameters of the ``purerl lm ppo|grpo|dpo`` run ``run``, which must have started from
    an SFT run equal to ``sft_config``."""
    values = run_directory_values(Path(run), "policy", POLICY_ALGORITHMS)
    algorithm = values["_algorithm"]
    config = config_from_dict(METHODS[algorithm][0], values)
    require_same_sft("policy", run, config.init, sft_config)
    if algorithm == "dpo":
        method = make_dpo(config, sft_config, sft_params)
    else:
        method = {"ppo": make_lm_ppo, "grpo": make_lm_grpo}[algorithm](config, sft_config, sft_params, None)
    return method.policy(restore_params(Path(run), lambda: method.state))


def method_evaluation(method: LMMethod, config: Any, sft_config: SFTConfig, sft_params, scorer: Scorer | None = None):
    """``evaluate(state, step) -> Evaluation``: the evaluation every policy shares (``purerl.lm.evaluation``,
    the SFT policy as the KL reference, sampled with the step's key from the evaluation stream; with the
    ``scorer`` a policy is trained on, its ``proxy_score``), if the method trains a policy, with the method's
    own held-out metrics (``LMMethod.evaluate``) added."""
    evaluate_policy = None
    if method.policy is not None:
        evaluate_policy = make_evaluate(
            sft_config.task_instance,
            method.model,
            config.eval_prompts,
            config.seed,
            config.eval_temperature,
            config.samples_shown,
            reference_params=sft_params,
            scorer=scorer,
        )

    def evaluate(state: Any, step: int) -> Evaluation:
        evaluation = Evaluation({}, [])
        if evaluate_policy is not None:
            evaluation = evaluate_policy(method.policy(state), step_key(state.streams.evaluation, step))
        extra = {} if method.evaluate is None else method.evaluate(state)
        return Evaluation(evaluation.metrics | extra, evaluation.samples)

    return evaluate


def run_pairs(config: PairsConfig, out: Path, stream: TextIO | None = None) -> dict[str, Any]:
    """Samples and labels the preference pairs into ``out/pairs.jsonl``; returns the summary."""
    stream = sys.stderr if stream is None else stream
    check_run_paths(config)
    sft_config, params = load_sft_policy(config.init)
    model, _ = model_from_sft(sft_config, params)
    if config.policy:
        params = load_run_policy(config.policy, sft_config, params)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.json", "pairs")
    start = time.perf_counter()
    rows = make_pairs(sft_config.task_instance, model, params, config)
    save_pairs(rows, out / "pairs.jsonl")
    summary = {
        "algorithm": "pairs",
        "task": sft_config.task,
        "prompts": config.prompts,
        "pairs": len(rows),
        "flipped": sum(row["flipped"] for row in rows),
        "mean_chosen_reward": sum(row["chosen_reward"] for row in rows) / max(len(rows), 1),
        "mean_rejected_reward": sum(row["rejected_reward"] for row in rows) / max(len(rows), 1),
        "seconds": time.perf_counter() - start,
    } | environment_info()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{len(rows)} pairs from {config.prompts} prompts ({summary['flipped']} flipped) -> {out}", file=stream)
    return summary


def rm_trainer(config: RewardModelConfig) -> LMTrainer:
    sft_config, sft_params = load_sft_policy(config.init)
    method = make_reward_model(config, sft_config, sft_params)
    return LMTrainer(
        algorithm="rm",
        config=config,
        init_state=method.state,
        train_step=method.train_step,
        evaluate=method_evaluation(method, config, sft_config, sft_params),
        step_metrics=REWARD_MODEL_METRICS,
        eval_metrics=REWARD_MODEL_EVAL_METRICS,
        description=f"reward model on {', '.join(config.pairs)}: {config.steps} steps x {config.batch_size} pairs",
        tokens_per_step=2 * config.batch_size * method.model.config.max_len,
        summary={"task": sft_config.task, "init": config.init, "pairs": config.pairs},
    )


def dpo_trainer(config: DPOConfig) -> LMTrainer:
    sft_config, sft_params = load_sft_policy(config.init)
    method = make_dpo(config, sft_config, sft_params)
    return LMTrainer(
        algorithm="dpo",
        config=config,
        init_state=method.state,
        train_step=method.train_step,
        evaluate=method_evaluation(method, config, sft_config, sft_params),
        step_metrics=DPO_METRICS,
        eval_metrics=(*POLICY_METRICS, "kl_to_reference", "preference_accuracy"),
        description=f"DPO ({config.loss_type}, beta {config.beta}) on {', '.join(config.pairs)}: "
        f"{config.steps} steps x {config.batch_size} pairs",
        tokens_per_step=2 * config.batch_size * method.model.config.max_len,
        summary={"task": sft_config.task, "init": config.init, "pairs": config.pairs},
    )


def policy_gradient_trainer(
    algorithm: str, make: Callable[..., LMMethod], step_metrics: tuple[str, ...], config: Any
) -> LMTrainer:
    """PPO or GRPO (``make``: ``make_lm_ppo`` or ``make_lm_grpo``): both sample from the policy each step
    and are evaluated alike."""
    sft_config, sft_params = load_sft_policy(config.init)
    scorer, scored_by = load_scorer(config, sft_config, sft_params)
    method = make(config, sft_config, sft_params, scorer)
    completions = config.completions_per_step
    total, _ = count_params(method.state.params)
    return LMTrainer(
        algorithm=algorithm,
        config=config,
        init_state=method.state,
        train_step=method.train_step,
        evaluate=method_evaluation(method, config, sft_config, sft_params, scorer),
        step_metrics=step_metrics,
        eval_metrics=(*POLICY_METRICS, "kl_to_reference", *(("proxy_score",) if scorer else ())),
        description=f"{algorithm.upper()} on {sft_config.task} from {config.init}, scored by {scored_by}: "
        f"{config.steps} steps x {completions} completions, {total:,} trained parameters",
        tokens_per_step=completions * method.model.config.max_len,
        summary={"task": sft_config.task, "init": config.init, "scored_by": scored_by, "trained_parameters": total},
    )


METHODS: dict[str, tuple[type, Any]] = {
    "rm": (RewardModelConfig, rm_trainer),
    "dpo": (DPOConfig, dpo_trainer),
    "ppo": (LMPPOConfig, partial(policy_gradient_trainer, "ppo", make_lm_ppo, PPO_METRICS)),
    "grpo": (LMGRPOConfig, partial(policy_gradient_trainer, "grpo", make_lm_grpo, GRPO_METRICS)),
}


def run_method(
    algorithm: str,
    config: Any,
    out: Path,
    resume: bool = False,
    stream: TextIO | None = None,
    stop_grace: float = DEFAULT_STOP_GRACE,
) -> dict[str, Any]:
    """Trains (or continues) the ``algorithm`` run in ``out``; returns the summary."""
    check_run_paths(config)
    trainer = dataclasses.replace(METHODS[algorithm][1](config), inputs=run_inputs(config))
    return run_lm(trainer, out, resume, stream, stop_grace)


def load_method_config(algorithm: str, out: Path) -> Any:
    return load_lm_config(out, algorithm, METHODS[algorithm][0])
