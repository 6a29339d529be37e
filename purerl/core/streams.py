"""Random streams: every source of randomness in a run is one branch of one split of its seed key.

    streams = split_streams(seed_key)   # one split; one named branch per stream

| stream | control (PPO, GRPO, SAC) | language model |
| --- | --- | --- |
| ``init`` | network parameters, the initial env states | SFT: the model's parameters |
| ``rollout`` | env resets and steps, sampled actions (SAC: and warm-up ones) | PPO, GRPO: completions to train on |
| ``minibatch`` | the epochs' shuffles (SAC: replay samples, its losses' actions) | PPO, GRPO: the same |
| ``evaluation`` | the final evaluation's episodes | every method: the evaluation samples |
| ``head`` | (unused) | a fresh scalar head: PPO's critic, the reward model |
| ``pairs`` | (unused) | the completions sampled for preference pairs; the reward model's SFT samples |

The key of update (LM: step) ``u`` in a stream is ``step_key(stream, u) = fold_in(stream, u)``, which that
update then splits into the keys it uses. So every key has one way of deriving children: the seed key and
each update's key only ``split``, a stream key only ``fold_in`` with distinct update indices. Deriving keys
from one parent by both would hand out the same key twice: with JAX's default (partitionable) threefry,
``fold_in(k, i)`` equals ``split(k, n)[i]``. No other key is made anywhere: ``tests/test_streams.py``
records every key that each method consumes, evaluation included, and checks that none is consumed twice.
(The GRPO reference policy's refresh draws no randomness.)

Runs that share a seed share the streams of the same name: common random numbers. PPO and GRPO with the
same seed start from the same policy weights, and every point of a sweep trains the same seeds.

Data that Python code generates has NumPy streams of its own: the prompts or demonstrations of training step
``s`` come from ``numpy.random.default_rng([seed, s])``, evaluation prompts from ``[seed, NUMPY_EVAL_STREAM]``,
the preference pairs' prompts, flips and held-out split from ``[seed, NUMPY_PAIRS_STREAM]``, and the prompts
of the SFT samples that a reward model reports its score statistics on from ``[seed, NUMPY_REFERENCE_STREAM]``.
"""

from typing import NamedTuple

import jax

NUMPY_EVAL_STREAM = 2**31 - 1  # the evaluation prompts: apart from every training step's
NUMPY_PAIRS_STREAM = 2**31 - 2  # the preference pairs' prompts, flips and split
NUMPY_REFERENCE_STREAM = 2**31 - 3  # the prompts of the SFT samples a reward model's scores are normalised on


class Streams(NamedTuple):
    """One seed's stream keys (typed PRNG keys), the branches of one split of its seed key."""

    init: jax.Array
    rollout: jax.Array
    minibatch: jax.Array
    evaluation: jax.Array
    head: jax.Array
    pairs: jax.Array


def split_streams(seed_key: jax.Array) -> Streams:
    """The streams of ``seed_key`` (a typed key, e.g. ``jax.random.key(seed)`` or a row of
    ``jax.random.split``): one ``split``, one branch per field of ``Streams``. Works under ``vmap``."""
    return Streams(*jax.random.split(seed_key, len(Streams._fields)))


def seed_streams(seed: int) -> Streams:
    """The streams of ``jax.random.key(seed)`` (the language model's runs, one seed each)."""
    return split_streams(jax.random.key(seed))


def step_key(stream: jax.Array, index: int | jax.Array) -> jax.Array:
    """The key of update (or step) ``index`` in ``stream``: ``fold_in(stream, index)``."""
    return jax.random.fold_in(stream, index)
