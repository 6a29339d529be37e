"""String tasks over a small alphabet: ``reverse`` (one right answer) and ``palindrome`` (many).

``reverse``: ``abcd`` -> ``dcba``; reward 1 for an exact match, or with ``partial_credit`` the fraction of
positions right (over the longer of answer and target). ``palindrome``: ``len=5 abc`` -> any palindrome of
5 letters from {a, b, c}; reward 1 when all three constraints hold. With many right answers, a policy that
collapses onto one of them is visible as few unique completions per prompt.

Demonstrations are right with probability ``correct_fraction`` (default 0.8). A wrong reversal has one
letter changed; a wrong palindrome has one letter changed where that breaks the symmetry.
"""

import numpy as np

from purerl.lm.tasks.base import Task, perturb_one_char, require_fraction

LETTERS = "abcdefgh"


def check_lengths(min_length: int, max_length: int, limit: int) -> None:
    if not 1 <= min_length <= max_length <= limit:
        raise ValueError(f"lengths {min_length}..{max_length} must satisfy 1 <= min <= max <= {limit}")


class Reverse(Task):
    name = "reverse"
    diversity_unit = "char"

    def __init__(
        self, min_length: int = 3, max_length: int = 8, partial_credit: bool = False, correct_fraction: float = 0.8
    ):
        check_lengths(min_length, max_length, 16)
        require_fraction("correct_fraction", correct_fraction)
        self.min_length, self.max_length = min_length, max_length
        self.partial_credit, self.correct_fraction = partial_credit, correct_fraction
        self.max_prompt_chars = self.max_completion_chars = max_length

    def prompts(self, rng: np.random.Generator, n: int) -> list[str]:
        lengths = rng.integers(self.min_length, self.max_length + 1, n)
        return ["".join(rng.choice(list(LETTERS), int(length))) for length in lengths]

    def demonstrations(self, rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
        prompts = self.prompts(rng, n)
        completions = [
            p[::-1] if rng.random() < self.correct_fraction else perturb_one_char(p[::-1], LETTERS, rng)
            for p in prompts
        ]
        return prompts, completions

    def reward(self, prompt: str, completion: str) -> float:
        target = prompt[::-1]
        if not self.partial_credit:
            return float(completion == target)
        matches = sum(a == b for a, b in zip(completion, target, strict=False))
        return matches / max(len(completion), len(target))

    def is_valid(self, prompt: str, completion: str) -> bool:
        return len(completion) == len(prompt) and set(completion) <= set(LETTERS)


class Palindrome(Task):
    name = "palindrome"
    diversity_unit = "char"

    def __init__(self, min_length: int = 3, max_length: int = 8, correct_fraction: float = 0.8):
        check_lengths(min_length, max_length, 9)
        require_fraction("correct_fraction", correct_fraction)
        self.min_length, self.max_length, self.correct_fraction = min_length, max_length, correct_fraction
        self.max_prompt_chars = len(f"len={max_length} ") + 3
        self.max_completion_chars = max_length

    @staticmethod
    def parse(prompt: str) -> tuple[int, str]:
        """``"len=5 abc"`` -> ``(5, "abc")``."""
        length, letters = prompt.removeprefix("len=").split(" ")
        return int(length), letters

    def prompts(self, rng: np.random.Generator, n: int) -> list[str]:
        prompts = []
        for _ in range(n):
            length = int(rng.integers(self.min_length, self.max_length + 1))
            letters = "".join(sorted(rng.choice(list(LETTERS), int(rng.integers(2, 4)), replace=False)))
            prompts.append(f"len={length} {letters}")
        return prompts

    def demonstrations(self, rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
        prompts, completions = self.prompts(rng, n), []
        for prompt in prompts:
            length, letters = self.parse(prompt)
            half = "".join(rng.choice(list(letters), (length + 1) // 2))
            palindrome = half + half[: length // 2][::-1]
            if rng.random() >= self.correct_fraction:
                # Change a letter off the centre, so the result is certainly not a palindrome.
                position = int(rng.integers(length // 2))
                palindrome = (
                    palindrome[:position]
                    + perturb_one_char(palindrome[position], letters, rng)
                    + palindrome[position + 1 :]
                )
            completions.append(palindrome)
        return prompts, completions

    def reward(self, prompt: str, completion: str) -> float:
        length, letters = self.parse(prompt)
        return float(len(completion) == length and completion == completion[::-1] and set(completion) <= set(letters))

    def is_valid(self, prompt: str, completion: str) -> bool:
        """Only the prompt's letters."""
        return len(completion) > 0 and set(completion) <= set(self.parse(prompt)[1])
