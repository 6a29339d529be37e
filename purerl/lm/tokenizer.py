"""A character-level tokenizer over a fixed, shipped alphabet, and the batch layout every LM algorithm uses.

Ids 0-3 are reserved: ``<pad>`` (0, never trained on, distinct from ``<eos>``), ``<bos>``, ``<eos>`` and
``<sep>`` (between prompt and completion). The alphabet is fixed in code, so a model's vocabulary never
depends on the data it saw.

Layout of a batch (``encode_batch``): a **prompt block** ``[B, P]``, left-padded, holding
``<bos> prompt <sep>``, then a **completion block** ``[B, C]``, right-padded, holding ``completion <eos>``.
Every prompt ends at slot ``P - 1``, so generation starts at slot ``P`` for the whole batch; positions come
from the mask (``purerl.lm.model.positions_from_mask``), so left padding never shifts them.
"""

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

PAD, BOS, EOS, SEP = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<sep>")
ALPHABET = " abcdefghijklmnopqrstuvwxyz0123456789+-=.,!?'"


class CharTokenizer:
    """``encode``/``decode`` between text and ids; ``vocab_size`` = 4 special tokens + ``len(ALPHABET)``."""

    def __init__(self, alphabet: str = ALPHABET):
        if len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet {alphabet!r} repeats a character")
        self.alphabet = alphabet
        self._ids = {char: index + len(SPECIAL_TOKENS) for index, char in enumerate(alphabet)}
        self.vocab_size = len(SPECIAL_TOKENS) + len(alphabet)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - set(self._ids))
        if unknown:
            raise ValueError(
                f"characters {''.join(unknown)!r} in {text!r} are not in the vocabulary; allowed: {self.alphabet!r}"
            )
        return [self._ids[char] for char in text]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` up to the first ``<eos>``; ``<pad>``, ``<bos>`` and ``<sep>`` are skipped."""
        chars = []
        for token in ids:
            token = int(token)
            if token == EOS:
                break
            if token >= len(SPECIAL_TOKENS):
                chars.append(self.alphabet[token - len(SPECIAL_TOKENS)])
        return "".join(chars)


class Batch(NamedTuple):
    """Token ids and validity masks of the two blocks (a pytree); masks are ``bool``."""

    prompt: np.ndarray  # [B, P] int32, left-padded: <pad>* <bos> prompt <sep>
    prompt_mask: np.ndarray  # [B, P]
    completion: np.ndarray  # [B, C] int32, right-padded: completion <eos> <pad>*
    completion_mask: np.ndarray  # [B, C]


def prompt_block_length(max_prompt_chars: int) -> int:
    return max_prompt_chars + 2  # <bos> ... <sep>


def completion_block_length(max_completion_chars: int) -> int:
    return max_completion_chars + 1  # ... <eos>


def encode_prompts(tokenizer: CharTokenizer, prompts: Sequence[str], max_prompt_chars: int) -> tuple[np.ndarray, ...]:
    """``(prompt [B, P], prompt_mask [B, P])`` with ``P = max_prompt_chars + 2``, left-padded."""
    length = prompt_block_length(max_prompt_chars)
    tokens = np.full((len(prompts), length), PAD, np.int32)
    for row, prompt in enumerate(prompts):
        if len(prompt) > max_prompt_chars:
            raise ValueError(f"prompt {prompt!r} has {len(prompt)} characters; at most {max_prompt_chars} fit")
        ids = [BOS, *tokenizer.encode(prompt), SEP]
        tokens[row, length - len(ids) :] = ids
    return tokens, tokens != PAD


def encode_batch(
    tokenizer: CharTokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    max_prompt_chars: int,
    max_completion_chars: int,
) -> Batch:
    """The two blocks for (prompt, completion) pairs; every completion gets its ``<eos>``."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    prompt, prompt_mask = encode_prompts(tokenizer, prompts, max_prompt_chars)
    completion = np.full((len(completions), completion_block_length(max_completion_chars)), PAD, np.int32)
    for row, text in enumerate(completions):
        if len(text) > max_completion_chars:
            raise ValueError(f"completion {text!r} has {len(text)} characters; at most {max_completion_chars} fit")
        ids = [*tokenizer.encode(text), EOS]
        completion[row, : len(ids)] = ids
    return Batch(prompt, prompt_mask, completion, completion != PAD)
