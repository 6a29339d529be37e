"""What a toy text task is: generated prompts, imperfect demonstrations and a verifiable reward.

Tasks run on the host (plain Python over strings) and draw everything from a ``numpy.random.Generator``
the caller seeds, so the same seed gives the same data and nothing is downloaded.
"""

from abc import ABC, abstractmethod

import numpy as np


class Task(ABC):
    """A task: ``prompts`` to sample from, ``demonstrations`` for SFT (deliberately imperfect, so RL has
    room to improve), ``reward`` and ``is_valid`` to score any completion."""

    name: str
    max_prompt_chars: int
    max_completion_chars: int
    # What distinct-n counts n-grams of: "word", or "char" for tasks whose completions are one word.
    diversity_unit: str = "word"

    @abstractmethod
    def prompts(self, rng: np.random.Generator, n: int) -> list[str]:
        """``n`` prompts."""

    @abstractmethod
    def demonstrations(self, rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
        """``(prompts, completions)`` for supervised fine-tuning, a known fraction of them wrong."""

    @abstractmethod
    def reward(self, prompt: str, completion: str) -> float:
        """The verifiable reward of ``completion`` for ``prompt``."""

    @abstractmethod
    def is_valid(self, prompt: str, completion: str) -> bool:
        """Whether the completion is well-formed for the task (fluency, format), whatever its reward."""

    def is_correct(self, prompt: str, completion: str) -> bool:
        """Whether the completion earns the task's full reward (accuracy)."""
        return self.reward(prompt, completion) >= 1.0

    def rewards(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        return np.array([self.reward(p, c) for p, c in zip(prompts, completions, strict=True)], np.float32)


def require_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value} must be in [0, 1]")


def perturb_one_char(text: str, choices: str, rng: np.random.Generator) -> str:
    """``text`` with one position replaced by a different character from ``choices``."""
    position = int(rng.integers(len(text)))
    replacement = rng.choice([c for c in choices if c != text[position]])
    return text[:position] + replacement + text[position + 1 :]
