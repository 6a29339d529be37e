"""Sample-based KL estimators k1, k2, k3 (Schulman, "Approximating KL Divergence", 2020).

Each estimates KL(p || q) from samples x ~ p, given ``log_ratio = log q(x) - log p(x)``:

- k1 = -log_ratio: unbiased, high variance, can be negative per sample.
- k2 = log_ratio**2 / 2: biased, low variance, always >= 0.
- k3 = (exp(log_ratio) - 1) - log_ratio: unbiased, low variance, always >= 0 (the GRPO paper's choice).

In PPO, samples come from the rollout policy, so ``approx_kl`` of KL(pi_old || pi_new) uses
``log_ratio = log pi_new - log pi_old``. For a KL penalty to a reference policy with samples from pi,
use ``log_ratio = log pi_ref - log pi``.

As a *loss term* differentiated on samples from pi (GRPO's ``beta * KL``), what matters is the expected
gradient, not the value (Schulman 2020; Tang & Munos, "On a few pitfalls in KL divergence gradient
estimation for RL", 2025):

- k1: E_pi[grad k1] = E_pi[grad log pi] = 0, the score function's mean. The penalty does nothing in
  expectation, so it is refused as a loss term (``require_loss_estimator``); it is right as a reward penalty
  (LM PPO) and as a metric.
- k2: E_pi[grad k2] = sum_x pi (log pi - log pi_ref) grad log pi = grad KL(pi || pi_ref).
- k3: E_pi[grad k3] = -sum_x pi_ref grad log pi = grad KL(pi_ref || pi), the other direction.
"""

from typing import Literal

import jax
import jax.numpy as jnp

KLEstimator = Literal["k1", "k2", "k3"]
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")
KL_LOSS_ESTIMATORS: tuple[str, ...] = ("k2", "k3")
KL_LOSS_ESTIMATOR_HELP = (
    "estimator of the KL penalty in the loss: k2 (its gradient is that of KL(pi || pi_ref)) or "
    "k3 (gradient of KL(pi_ref || pi), the GRPO paper's choice); k1 is refused: its gradient is zero in expectation"
)


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


def require_loss_estimator(name: str, value: str) -> None:
    """Raises ``ValueError`` unless ``value`` is a KL estimator whose gradient on samples from pi is a KL's
    gradient (``KL_LOSS_ESTIMATORS``); k1 gets its own reason."""
    if value == "k1":
        raise ValueError(
            f"{name}='k1' cannot be a loss term: on samples from pi its gradient is the score function, zero in "
            "expectation, so beta would do nothing; use k2 (gradient of KL(pi || pi_ref)) or k3 (of KL(pi_ref || pi))"
        )
    if value not in KL_LOSS_ESTIMATORS:
        raise ValueError(f"{name} must be one of {', '.join(KL_LOSS_ESTIMATORS)}; got {value!r}")
