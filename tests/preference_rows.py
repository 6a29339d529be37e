"""Preference pairs written by hand, for the tests that need pairs a tiny SFT run cannot sample."""

import numpy as np

from purerl.lm.tasks import make_task


def sentiment_pairs(n: int, seed: int = 0) -> list[dict]:
    """Ground-truth pairs: a wholly positive review over a wholly negative one, for the same prompt."""
    task, rng = make_task("sentiment"), np.random.default_rng(seed)
    positive, negative = ["good", "fun", "clever", "superb"], ["bad", "dull", "awful", "boring"]
    rows = []
    for prompt in task.prompts(rng, n):
        chosen = f" the plot was {rng.choice(positive)}."
        rejected = f" the plot was {rng.choice(negative)}."
        rows.append(
            {"prompt": prompt, "chosen": chosen, "rejected": rejected, "chosen_reward": 1.0, "rejected_reward": -1.0}
            | {"flipped": False}
        )
    return rows
