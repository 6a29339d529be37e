"""Evaluating a policy on a task's fixed evaluation prompts: the task's reward, validity and accuracy, the
diversity of what it writes, and (given a reference) how far it has moved from the reference.

Every method (SFT, DPO, PPO, GRPO) is evaluated by this one function, so their numbers compare.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.config import require_choice
from purerl.core.streams import NUMPY_EVAL_STREAM
from purerl.lm.model import CausalLM, completion_log_probs
from purerl.lm.rollout import Scorer, make_rollout
from purerl.lm.tasks import Task

POLICY_METRICS = ("reward", "validity", "accuracy", "distinct_1", "distinct_2", "unique")


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]  # POLICY_METRICS, plus kl_to_reference and proxy_score when asked for
    samples: list[tuple[str, str]]  # (prompt, completion), the first few


def distinct_n(texts: Sequence[str], n: int, unit: str = "word") -> float:
    """Distinct-n (Li et al. 2016): unique n-grams over all n-grams of ``texts`` (0 if none), n-grams of
    words or, with ``unit="char"``, of characters."""
    require_choice("unit", unit, ("word", "char"))
    split = str.split if unit == "word" else list
    grams = [tuple(units[i : i + n]) for units in map(split, texts) for i in range(len(units) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def make_evaluate(
    task: Task,
    model: CausalLM,
    num_prompts: int,
    seed: int,
    temperature: float,
    samples_shown: int,
    reference_params=None,
    scorer: Scorer | None = None,
) -> Callable[[object, jax.Array], Evaluation]:
    """``evaluate(params, key) -> Evaluation`` on ``num_prompts`` prompts drawn from
    ``rng([seed, NUMPY_EVAL_STREAM])`` (``purerl.core.streams``).

    Metrics: mean task ``reward``; fractions ``validity`` and ``accuracy``; ``distinct_1``/``distinct_2``
    over all completions (of words, or of characters: ``task.diversity_unit``); ``unique``, the fraction of
    distinct completions. With ``reference_params``,
    ``kl_to_reference`` = mean over completions of ``sum_t (log pi - log pi_ref)`` at the sampling temperature
    (the k1 estimate of the sequence KL(pi || pi_ref), as TRL's ``objective/kl``). With ``scorer`` (the
    learned reward a policy is trained on), ``proxy_score`` = its mean over the same completions, beside the
    task's (gold) ``reward``.
    """
    prompts = task.prompts(np.random.default_rng([seed, NUMPY_EVAL_STREAM]), num_prompts)
    rollout = make_rollout(task, model, temperature)
    reference_log_probs = jax.jit(lambda params, batch: completion_log_probs(model, params, batch, temperature))

    def evaluate(params, key: jax.Array) -> Evaluation:
        result = rollout(params, prompts, key)
        completions = result.completions
        pairs = list(zip(prompts, completions, strict=True))
        metrics = {
            "reward": float(np.mean(result.task_rewards)),
            "validity": float(np.mean([task.is_valid(p, c) for p, c in pairs])),
            "accuracy": float(np.mean([task.is_correct(p, c) for p, c in pairs])),
            "distinct_1": distinct_n(completions, 1, task.diversity_unit),
            "distinct_2": distinct_n(completions, 2, task.diversity_unit),
            "unique": len(set(completions)) / len(completions),
        }
        if reference_params is not None:
            log_ratio = result.log_probs - reference_log_probs(reference_params, result.batch)
            metrics["kl_to_reference"] = float(jnp.mean(jnp.sum(log_ratio, axis=-1)))
        if scorer is not None:
            metrics["proxy_score"] = float(np.mean(scorer(prompts, completions, result.batch)))
        return Evaluation(metrics, pairs[:samples_shown])

    return evaluate
