"""Distributions that distrax does not ship ready-made."""

import distrax
import jax
import jax.numpy as jnp


class TanhSquashedGaussian(distrax.Transformed):
    """A diagonal Gaussian over ``u`` pushed into the box ``[low, high]^A`` by
    ``a = mid + half * tanh(u)`` (``mid = (high + low) / 2``, ``half = (high - low) / 2``): SAC's policy
    (Haarnoja et al. 2018, appendix C).

    ``log_prob(a) = log N(u; mean, std) - sum_i [log half + log(1 - tanh(u_i)^2)]`` by the change of variables
    (their eq. 21, with the affine rescaling's Jacobian added); ``sample_and_log_prob`` computes it from the
    pre-squash sample ``u`` with distrax's stable ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))``, never
    through ``atanh(a)``, which loses every digit as ``|a|`` nears the bounds.

    ``mean``, ``log_std``: ``[..., A]`` float32; ``low``, ``high``: floats. ``mode()`` is the squashed mean
    ``mid + half * tanh(mean)``, the action SAC evaluates deterministically (not the squashed density's mode).
    """

    def __init__(self, mean: jax.Array, log_std: jax.Array, low: float, high: float):
        squash = distrax.Chain([distrax.ScalarAffine(shift=(high + low) / 2, scale=(high - low) / 2), distrax.Tanh()])
        super().__init__(distrax.MultivariateNormalDiag(mean, jnp.exp(log_std)), distrax.Block(squash, ndims=1))

    def mode(self) -> jax.Array:
        return self.bijector.forward(self.distribution.mode())
