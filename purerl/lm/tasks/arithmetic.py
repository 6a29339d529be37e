"""``addition``: ``37+85`` -> ``122``, exact match.

Operands have 1 to ``max_digits`` digits (the length drawn first, so short and long sums are equally
common). Demonstrations are right with probability ``correct_fraction`` (default 0.8); a wrong one has one
digit of the sum changed, so it looks like a plausible slip, not noise.
"""

import numpy as np

from purerl.lm.tasks.base import Task, perturb_one_char, require_fraction


class Addition(Task):
    name = "addition"
    diversity_unit = "char"

    def __init__(self, max_digits: int = 3, correct_fraction: float = 0.8):
        if not 1 <= max_digits <= 6:
            raise ValueError(f"max_digits={max_digits} must be between 1 and 6")
        require_fraction("correct_fraction", correct_fraction)
        self.max_digits, self.correct_fraction = max_digits, correct_fraction
        self.max_prompt_chars = 2 * max_digits + 1
        self.max_completion_chars = max_digits + 1

    def _operand(self, rng: np.random.Generator) -> int:
        digits = int(rng.integers(1, self.max_digits + 1))
        return int(rng.integers(0 if digits == 1 else 10 ** (digits - 1), 10**digits))

    def prompts(self, rng: np.random.Generator, n: int) -> list[str]:
        return [f"{self._operand(rng)}+{self._operand(rng)}" for _ in range(n)]

    def demonstrations(self, rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
        prompts = self.prompts(rng, n)
        completions = []
        for prompt in prompts:
            answer = str(sum(map(int, prompt.split("+"))))
            if rng.random() >= self.correct_fraction:
                answer = perturb_one_char(answer, "0123456789", rng)
            completions.append(answer)
        return prompts, completions

    def reward(self, prompt: str, completion: str) -> float:
        return float(completion == str(sum(map(int, prompt.split("+")))))

    def is_valid(self, prompt: str, completion: str) -> bool:
        """A number: digits only, no leading zero."""
        return completion.isdigit() and (completion == "0" or not completion.startswith("0"))
