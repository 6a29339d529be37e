"""What every language-model training run shares: its run settings (steps, optimiser, evaluation,
checkpoints, seed), its optimiser, and the one type every method's ``make_*`` returns (``LMMethod``).

AdamW with weight decay on matrices only (as nanoGPT), linear warm-up then cosine decay to
``min_lr_fraction`` of the peak over all optimiser steps, global-norm clipping first
(``purerl.core.optim``). The RL methods default to no warm-up and a decay to 0 (the lm-human-preferences
detail: anneal the learning rate to 0).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import optax

from purerl.core.config import Config, doc, finite_non_negative, in_range, non_negative, positive
from purerl.core.optim import clipped_adamw, warmup_cosine


@dataclass(frozen=True)
class TrainingConfig(Config):
    """Each field checks its own value (a subclass's new default keeps the check); ``validate`` checks the
    rules between fields."""

    steps: int = doc(400, "training steps (each one batch; RL methods: one rollout and its update epochs)", positive)
    learning_rate: float = doc(3e-3, "peak AdamW learning rate", positive)
    warmup_steps: int = doc(40, "linear warm-up, in optimiser steps", non_negative)
    min_lr_fraction: float = doc(0.1, "the cosine decays to this fraction of the peak", in_range(0.0, 1.0))
    weight_decay: float = doc(0.1, "AdamW weight decay (matrices only)", non_negative)
    max_grad_norm: float = doc(1.0, "global gradient-norm clip", positive)
    eval_every: int = doc(100, "evaluate every this many steps (and at the start and the end)", positive)
    eval_prompts: int = doc(256, "prompts in the evaluation set", positive)
    eval_temperature: float = doc(1.0, "sampling temperature at evaluation", positive)
    samples_shown: int = doc(4, "sample completions printed at each evaluation", non_negative)
    checkpoint_every: int = doc(
        200, "save a checkpoint every this many steps (0: only at the end and on Ctrl-C)", non_negative
    )
    seed: int = doc(0, "seed of the initialisation, the data and the sampling")

    def validate(self) -> None:
        if self.warmup_steps >= self.optimizer_steps:
            raise ValueError(
                f"warmup_steps={self.warmup_steps} must be less than the run's {self.optimizer_steps} optimiser steps "
                "(lower --warmup-steps)"
            )

    @property
    def updates_per_step(self) -> int:
        """Optimiser steps per training step (RL methods: epochs x minibatches)."""
        return 1

    @property
    def optimizer_steps(self) -> int:
        return self.steps * self.updates_per_step


class LMMethod(NamedTuple):
    """What every language-model method's ``make_*`` returns (SFT, reward model, DPO, PPO, GRPO).

    ``train_step(state, step) -> (state, metrics)`` trains step ``step``, whose data come from ``(seed,
    step)`` alone (so a resumed run is the uninterrupted one); it is ``sample(state, step)`` (the step's
    data: a batch, pairs, or sampled and scored completions) then the jitted ``update``, exposed apart so
    that benchmarks can time the two phases. ``policy(state)`` is the parameters ``model`` samples with
    (None for a method that trains no policy: the reward model); ``evaluate(state)`` the method's own
    held-out metrics (None if it has none beyond the shared policy evaluation).
    """

    model: Any  # purerl.lm.model.CausalLM: the trained model (the policy; the reward model for rm)
    state: Any  # the training state before step 0
    train_step: Callable[[Any, int], tuple[Any, dict[str, Any]]]
    sample: Callable[[Any, int], Any]
    update: Callable[..., tuple[Any, dict[str, Any]]]
    policy: Callable[[Any], Any] | None = None
    evaluate: Callable[[Any], dict[str, float]] | None = None


def optimizer_and_schedule(config: TrainingConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The run's ``clipped_adamw`` and its ``warmup_cosine`` schedule over ``config.optimizer_steps``
    (``purerl.core.optim``)."""
    schedule = warmup_cosine(config.learning_rate, config.warmup_steps, config.optimizer_steps, config.min_lr_fraction)
    return clipped_adamw(schedule, config.max_grad_norm, config.weight_decay), schedule


PATH_FIELDS = {
    "init": "an SFT run directory (purerl lm sft --out DIR)",
    "pairs": "a preference-pairs directory (purerl lm pairs --out DIR)",
}


def required_path(name: str, value: str) -> None:
    """A path field (``init``) must be set: one line saying what it should name."""
    if not value:
        raise ValueError(f"--{name} is required: {PATH_FIELDS[name]}")


def path_tuple(name: str, value: tuple[str, ...]) -> None:
    """A field of several paths holds a tuple of them (on the command line: comma-separated)."""
    if not isinstance(value, tuple):
        raise ValueError(f"{name} must be a tuple of paths, got {value!r}")


def required_paths(name: str, value: tuple[str, ...]) -> None:
    """A field of several paths (``pairs``) that must name at least one."""
    path_tuple(name, value)
    required_path(name, value)


@dataclass(frozen=True)
class FineTuningConfig(TrainingConfig):
    """A method that starts from an SFT run: no warm-up, the learning rate annealed to 0, no weight decay."""

    init: str = doc("", "the SFT run directory the method starts from", required_path)
    steps: int = doc(100, "training steps (RL methods: rollouts, each followed by its update epochs)")
    learning_rate: float = doc(3e-4, "peak AdamW learning rate")
    warmup_steps: int = doc(0, "linear warm-up, in optimiser steps")
    min_lr_fraction: float = doc(0.0, "the cosine decays to this fraction of the peak (0: anneal to 0)")
    weight_decay: float = doc(0.0, "AdamW weight decay (matrices only)")
    eval_every: int = doc(25, "evaluate every this many steps (and at the start and the end)")
    checkpoint_every: int = doc(0, "save a checkpoint every this many steps (0: only at the end and on Ctrl-C)")


@dataclass(frozen=True)
class PairwiseConfig(FineTuningConfig):
    """A method trained on preference pairs (reward model, DPO)."""

    pairs: tuple[str, ...] = doc(
        (),
        "preference pairs: purerl lm pairs directories or pairs.jsonl files, comma-separated (several: their union)",
        required_paths,
    )
    batch_size: int = doc(32, "pairs per step", positive)
    held_out_fraction: float = doc(0.2, "pairs held out for evaluation", in_range(0.0, 1.0))


@dataclass(frozen=True)
class PolicyGradientConfig(FineTuningConfig):
    """A method that samples from its policy each step and updates on the scored samples (PPO, GRPO)."""

    reward_model: tuple[str, ...] = doc(
        (),
        "purerl lm rm run directories to score with, comma-separated (several: an ensemble); none: the task's "
        "verifiable reward",
        path_tuple,
    )
    normalize_reward: bool = doc(
        True,
        "standardise each reward model's score by the mean and std of its scores on SFT samples (its final "
        "sft_score_mean and sft_score_std)",
    )
    ensemble_penalty: float = doc(
        0.0,
        "with 2 or more reward models: the proxy is their mean score minus this times their std (their "
        "disagreement), in the units of the scores (normalised ones by default)",
        finite_non_negative,
    )
    epochs: int = doc(1, "passes over each rollout", positive)
    minibatches: int = doc(1, "minibatches per pass; must divide the completions per rollout", positive)
    clip_eps: float = doc(0.2, "policy ratio clip", positive)
    temperature: float = doc(1.0, "sampling temperature, also used by every log-prob", positive)
    missing_eos_penalty: float | None = doc(None, "subtracted from the score of completions that never emit <eos>")

    def validate(self) -> None:
        super().validate()
        if self.ensemble_penalty > 0 and len(self.reward_model) < 2:
            raise ValueError(
                f"ensemble_penalty={self.ensemble_penalty} needs an ensemble: --reward-model with 2 or more "
                f"run directories, got {len(self.reward_model)}"
            )
        if self.completions_per_step % self.minibatches:
            raise ValueError(
                f"the {self.completions_per_step} completions per rollout are not divisible by "
                f"minibatches={self.minibatches}"
            )

    @property
    def completions_per_step(self) -> int:
        raise NotImplementedError

    @property
    def updates_per_step(self) -> int:
        return self.epochs * self.minibatches
