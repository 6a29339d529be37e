"""Sample-based KL estimators k1, k2, k3 (Schulman, "Approximating KL Divergence", 2020).

Each estimates KL(p || q) from samples x ~ p, given ``log_ratio = log q(x) - log p(x)``:

- k1 = -log_ratio: unbiased, high variance, can be negative per sample.
- k2 = log_ratio**2 / 2: biased, low variance, always >= 0.
- k3 = (exp(log_ratio) - 1) - log_ratio: unbiased, low variance, always >= 0 (the GRPO paper's choice).

In PPO, samples come from the rollout policy, so ``approx_kl`` of KL(pi_old || pi_new) uses
``log_ratio = log pi_new - log pi_old``. For a KL penalty to a reference policy with samples from pi,
use ``log_ratio = log pi_ref - log pi``.
"""

from typing import Literal

import jax
import jax.numpy as jnp

KLEstimator = Literal["k1", "k2", "k3"]
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")


def kl_k1(log_ratio: jax.Array) -> jax.Array:
    return -log_ratio


def kl_k2(log_ratio: jax.Array) -> jax.Array:
    return 0.5 * jnp.square(log_ratio)


def kl_k3(log_ratio: jax.Array) -> jax.Array:
    return jnp.expm1(log_ratio) - log_ratio


def kl_estimate(log_ratio: jax.Array, estimator: KLEstimator) -> jax.Array:
    """Per-sample KL estimate by name; ``estimator`` is one of ``KL_ESTIMATORS``."""
    estimators = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}
    if estimator not in estimators:
        raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {KL_ESTIMATORS}")
    return estimators[estimator](log_ratio)
