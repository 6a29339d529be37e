"""``sentiment``: continue a short movie review; reward = positive minus negative words, normalised.

Reviews come from a small grammar: ``the NOUN was [very] ADJ[ and the NOUN was [very] ADJ].``, with a
shipped lexicon of positive and negative adjectives. A prompt is either the opening ``the NOUN was`` or a
whole first clause followed by `` and``. Demonstrations draw each adjective positive with probability
``positive_fraction`` (default 0.5, a neutral mixture), so a fine-tuned model writes both kinds and RL has
room to make it positive. The grammar gives an exact validity check: is prompt + completion a review the
grammar can produce? That makes fluency measurable when RL pushes the reward.
"""

import re

import numpy as np

from purerl.lm.tasks.base import Task, require_fraction

NOUNS = ("plot", "cast", "music", "film", "story", "acting", "ending")
POSITIVE = ("good", "great", "fun", "superb", "lovely", "moving", "clever")
NEGATIVE = ("bad", "dull", "awful", "boring", "weak", "silly", "bland")

_CLAUSE = rf"the ({'|'.join(NOUNS)}) was (very )?({'|'.join(POSITIVE + NEGATIVE)})"
_REVIEW = re.compile(rf"{_CLAUSE}( and {_CLAUSE})?\.")


class Sentiment(Task):
    name = "sentiment"
    max_prompt_chars = 32
    max_completion_chars = 44

    def __init__(self, positive_fraction: float = 0.5):
        require_fraction("positive_fraction", positive_fraction)
        self.positive_fraction = positive_fraction

    def _clause(self, rng: np.random.Generator) -> str:
        lexicon = POSITIVE if rng.random() < self.positive_fraction else NEGATIVE
        very = "very " if rng.random() < 0.3 else ""
        return f"the {rng.choice(NOUNS)} was {very}{rng.choice(lexicon)}"

    def _split(self, rng: np.random.Generator) -> tuple[str, str]:
        first, second = self._clause(rng), self._clause(rng)
        if rng.random() < 0.5:  # prompt: "the NOUN was"; completion: the rest of one or two clauses
            opening, rest = first.split(" was ")
            tail = f" and {second}" if rng.random() < 0.5 else ""
            return f"{opening} was", f" {rest}{tail}."
        return f"{first} and", f" {second}."

    def prompts(self, rng: np.random.Generator, n: int) -> list[str]:
        return [self._split(rng)[0] for _ in range(n)]

    def demonstrations(self, rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
        pairs = [self._split(rng) for _ in range(n)]
        return [p for p, _ in pairs], [c for _, c in pairs]

    def reward(self, prompt: str, completion: str) -> float:
        """``(#positive - #negative) / (#positive + #negative)`` over the completion's words; 0 without any."""
        words = re.findall(r"[a-z]+", completion)
        positive = sum(word in POSITIVE for word in words)
        negative = sum(word in NEGATIVE for word in words)
        return (positive - negative) / max(positive + negative, 1)

    def is_valid(self, prompt: str, completion: str) -> bool:
        return _REVIEW.fullmatch(prompt + completion) is not None

    def is_correct(self, prompt: str, completion: str) -> bool:
        """A valid review whose completion is wholly positive."""
        return self.is_valid(prompt, completion) and self.reward(prompt, completion) >= 1.0
