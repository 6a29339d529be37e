"""Preference pairs from the SFT policy, labelled by the task's ground-truth reward.

For each prompt, ``samples_per_prompt`` completions are sampled from the policy; the best and the worst by
the task's reward make a pair (prompts whose samples all score the same give none; completions that never
emitted ``<eos>`` take no part). With
``flip_probability`` a pair's labels are swapped, to exercise losses that are robust to label noise
(cDPO's label smoothing). Pairs are saved as JSON lines, so the reward model and DPO train on the same
pairs, and a reader can open them.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purerl.core.config import Config, all_positive, at_least, doc, in_range, positive
from purerl.core.streams import NUMPY_PAIRS_STREAM, seed_streams, step_key
from purerl.lm.model import CausalLM
from purerl.lm.rollout import ends_with_eos, make_rollout
from purerl.lm.tasks import Task
from purerl.lm.tokenizer import Batch, CharTokenizer, encode_batch
from purerl.lm.training import required_path


@dataclass(frozen=True)
class PairsConfig(Config):
    init: str = doc("", "the SFT run directory (the task, and the policy unless --policy)", required_path)
    policy: str = doc(
        "", "a purerl lm ppo|grpo|dpo run from --init whose policy samples instead (a new round of pairs)"
    )
    prompts: int = doc(1024, "prompts to sample for (each gives at most one pair)", positive)
    samples_per_prompt: int = doc(
        4, "completions sampled per prompt; the best and the worst make the pair", at_least(2, "to make a pair")
    )
    temperatures: tuple[float, ...] = doc(
        (1.0,),
        "sampling temperatures, comma-separated: the prompts are shared among them in equal blocks",
        all_positive,
    )
    flip_probability: float = doc(0.0, "probability that a pair's labels are swapped (label noise)", in_range(0.0, 1.0))
    seed: int = doc(0, "seed of the prompts, the sampling and the flips")

    def validate(self) -> None:
        if self.prompts < len(self.temperatures):
            raise ValueError(
                f"prompts={self.prompts} cannot be shared among {len(self.temperatures)} temperatures (one each)"
            )


def make_pairs(task: Task, model: CausalLM, params, config: PairsConfig) -> list[dict]:
    """Rows ``{prompt, chosen, rejected, chosen_reward, rejected_reward, flipped, temperature, task}``;
    ``chosen_reward`` is the ground truth of the completion labelled chosen (lower than ``rejected_reward``
    where flipped). Prompt ``i`` is sampled at ``temperatures[i * T // prompts]`` (``T`` temperatures), each
    block with its own key (``fold_in`` of the seed's ``pairs`` stream with the block's index)."""
    rng = np.random.default_rng([config.seed, NUMPY_PAIRS_STREAM])
    prompts = task.prompts(rng, config.prompts)
    k, blocks = config.samples_per_prompt, len(config.temperatures)
    stream, rows = seed_streams(config.seed).pairs, []
    for block, temperature in enumerate(config.temperatures):
        block_prompts = prompts[block * len(prompts) // blocks : (block + 1) * len(prompts) // blocks]
        rollout = make_rollout(task, model, temperature)
        result = rollout(params, [p for p in block_prompts for _ in range(k)], step_key(stream, block))
        stopped = np.asarray(ends_with_eos(result.batch))
        for group, prompt in enumerate(block_prompts):
            members = [i for i in range(group * k, (group + 1) * k) if stopped[i]]  # a completion that never
            rewards = result.task_rewards[members]  # stopped does not fit the block with its <eos>: left out
            completions = [result.completions[i] for i in members]
            if len(members) < 2 or rewards.max() == rewards.min():
                continue
            best, worst = int(np.argmax(rewards)), int(np.argmin(rewards))
            flipped = bool(rng.random() < config.flip_probability)
            chosen, rejected = (worst, best) if flipped else (best, worst)
            rows.append(
                {
                    "prompt": prompt,
                    "chosen": completions[chosen],
                    "rejected": completions[rejected],
                    "chosen_reward": float(rewards[chosen]),
                    "rejected_reward": float(rewards[rejected]),
                    "flipped": flipped,
                    "temperature": temperature,
                    "task": task.name,
                }
            )
    return rows


def save_pairs(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def load_pairs(paths: Sequence[str | Path]) -> list[dict]:
    """The rows of every ``pairs.jsonl`` in ``paths`` (``purerl lm pairs`` directories or the files), in order."""
    rows = []
    for path in map(Path, paths):
        if path.is_dir():
            path = path / "pairs.jsonl"
        if not path.exists():
            raise ValueError(
                f"no preference pairs at {str(path)!r} (make them with: purerl lm pairs --init SFT --out DIR)"
            )
        read = [json.loads(line) for line in path.read_text().splitlines() if line]
        if not read:
            raise ValueError(f"{str(path)!r} holds no preference pairs (every prompt's samples scored alike?)")
        rows += read
    return rows


def pair_key(row: dict) -> tuple[str, str, str]:
    return row["prompt"], row["chosen"], row["rejected"]


def split_pairs(rows: list[dict], held_out_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """``(train, held_out)``: the distinct pairs (prompt, chosen, rejected) in a seeded shuffle, the last
    ``held_out_fraction`` of them held out, each with all its copies (a pair sampled twice, or in two of the
    unioned sets, is never on both sides)."""
    keys = list(dict.fromkeys(map(pair_key, rows)))
    order = np.random.default_rng([seed, NUMPY_PAIRS_STREAM]).permutation(len(keys))
    held_out = int(round(held_out_fraction * len(keys)))
    if held_out == 0 or held_out == len(keys):
        raise ValueError(
            f"held_out_fraction={held_out_fraction} of {len(keys)} distinct pairs leaves no train or no held-out pair"
        )
    held_out_keys = {keys[i] for i in order[-held_out:]}
    train = [row for row in rows if pair_key(row) not in held_out_keys]
    return train, [row for row in rows if pair_key(row) in held_out_keys]


class PairSplit(NamedTuple):
    train_rows: list[dict]
    held_out_rows: list[dict]
    train: tuple[Batch, Batch]  # (chosen, rejected) of the train rows
    held_out: tuple[Batch, Batch]


def load_pair_split(paths: Sequence[str | Path], held_out_fraction: float, seed: int, task: Task) -> PairSplit:
    """The union of the pairs at ``paths`` (each of ``task``, where its rows say), split by ``split_pairs`` and
    encoded by ``pair_batches``."""
    rows = load_pairs(paths)
    other = next((row["task"] for row in rows if row.get("task", task.name) != task.name), None)
    if other is not None:
        raise ValueError(f"the pairs in {', '.join(map(str, paths))} include {other} pairs; this run is on {task.name}")
    train_rows, held_out_rows = split_pairs(rows, held_out_fraction, seed)
    return PairSplit(train_rows, held_out_rows, pair_batches(train_rows, task), pair_batches(held_out_rows, task))


def step_pair_rows(seed: int, step: int, num_pairs: int, batch_size: int) -> np.ndarray:
    """The rows of training step ``step``: ``batch_size`` of ``num_pairs``, a pure function of ``(seed, step)``."""
    return np.random.default_rng([seed, step]).choice(num_pairs, batch_size)


def on_both_sides(fn: Callable[[Batch], Any], chosen: Batch, rejected: Batch) -> tuple[Any, Any]:
    """``(fn(chosen), fn(rejected))`` from one call of ``fn`` on the ``2B`` rows of both batches."""
    n = chosen.prompt.shape[0]
    out = fn(jax.tree.map(lambda a, b: jnp.concatenate([a, b]), chosen, rejected))
    return jax.tree.map(lambda x: x[:n], out), jax.tree.map(lambda x: x[n:], out)


def pair_batches(rows: list[dict], task: Task) -> tuple[Batch, Batch]:
    """``(chosen, rejected)`` batches, row ``i`` of each the two completions of pair ``i``."""
    tokenizer, prompts = CharTokenizer(), [row["prompt"] for row in rows]
    encode = lambda key: encode_batch(  # noqa: E731
        tokenizer, prompts, [row[key] for row in rows], task.max_prompt_chars, task.max_completion_chars
    )
    return encode("chosen"), encode("rejected")
