"""Policy distributions (log-probs, entropy) against closed forms, and the PPO initialisation."""

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.core.networks import ActorCritic, StateActionEnsemble, cast_dense_weights, orthogonal


def test_categorical_log_prob_and_entropy_closed_form():
    net = ActorCritic(action_dim=3, discrete=True, hidden_sizes=(8,))
    obs = jax.random.normal(jax.random.key(0), (5, 4))
    params = net.init(jax.random.key(1), obs)
    # Scale the head so the policy is far from uniform.
    params = jax.tree_util.tree_map_with_path(lambda path, x: x * 300.0 if "actor_head" in str(path) else x, params)
    dist, _ = net.apply(params, obs)
    logits = np.asarray(net.apply(params, obs, method=lambda m, o: m.actor_head(m.actor_torso(o))), np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    actions = np.array([0, 1, 2, 1, 0])
    np.testing.assert_allclose(dist.log_prob(actions), log_probs[np.arange(5), actions], rtol=1e-5)
    np.testing.assert_allclose(dist.entropy(), -(np.exp(log_probs) * log_probs).sum(-1), rtol=1e-4, atol=1e-6)
    assert np.ptp(np.exp(log_probs)) > 0.1  # the check above is not on a uniform policy


def test_diagonal_gaussian_log_prob_and_entropy_closed_form():
    net = ActorCritic(action_dim=2, discrete=False, hidden_sizes=(8,), log_std_init=-0.5)
    obs = jax.random.normal(jax.random.key(0), (6, 3))
    params = net.init(jax.random.key(1), obs)
    np.testing.assert_array_equal(params["params"]["log_std"], [-0.5, -0.5])
    params["params"]["log_std"] = jnp.array([-0.5, 0.3])
    dist, _ = net.apply(params, obs)
    mean = np.asarray(dist.mean(), np.float64)
    std = np.exp([-0.5, 0.3])
    actions = np.asarray(jax.random.normal(jax.random.key(2), (6, 2)), np.float64) * 2
    expected = (-0.5 * ((actions - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(-1)
    np.testing.assert_allclose(dist.log_prob(actions), expected, rtol=1e-5)
    np.testing.assert_allclose(
        dist.entropy(), np.full(6, (0.5 * np.log(2 * np.pi * np.e) + np.log(std)).sum()), rtol=1e-5
    )
    # State-independent std: every observation gets the same scale.
    np.testing.assert_allclose(dist.stddev(), np.broadcast_to(std, (6, 2)), rtol=1e-6)


@pytest.mark.parametrize("discrete", [True, False])
def test_bfloat16_torsos_keep_float32_params_and_outputs(discrete):
    """Mixed precision: the hidden layers' dots run in bfloat16, the parameters, logits/means and values stay
    float32 and within bfloat16 rounding of the float32 network with the same parameters."""
    obs = jax.random.normal(jax.random.key(0), (32, 4)) * 3
    nets = {
        dtype: ActorCritic(action_dim=3, discrete=discrete, compute_dtype=dtype) for dtype in ("float32", "bfloat16")
    }
    params = nets["float32"].init(jax.random.key(1), obs)
    assert jax.tree.structure(params) == jax.tree.structure(nets["bfloat16"].init(jax.random.key(1), obs))
    assert {leaf.dtype for leaf in jax.tree.leaves(nets["bfloat16"].init(jax.random.key(1), obs))} == {
        np.dtype("float32")
    }
    outputs = {}
    for dtype, net in nets.items():
        dist, value = net.apply(params, obs)
        head = dist.logits if discrete else dist.mean()
        assert head.dtype == value.dtype == jnp.float32
        outputs[dtype] = np.concatenate([np.asarray(head), np.asarray(value)[:, None]], axis=1)
        lines = str(jax.make_jaxpr(net.apply)(params, obs)).splitlines()
        dots = [line.split("=")[0] for line in lines if "dot_general" in line]
        assert len(dots) == 6  # two hidden layers and a head, in the actor and in the critic
        assert sum("bf16" in dot for dot in dots) == (4 if dtype == "bfloat16" else 0)  # only the hidden layers
        cast = cast_dense_weights(params, dtype)  # what the rollouts apply: the same bits out
        dist_cast, value_cast = net.apply(cast, obs)
        np.testing.assert_array_equal(dist_cast.logits if discrete else dist_cast.mean(), head)
        np.testing.assert_array_equal(value_cast, value)
        cast_dtypes = {
            jax.tree_util.keystr(path): leaf.dtype for path, leaf in jax.tree_util.tree_leaves_with_path(cast)
        }
        assert {d for path, d in cast_dtypes.items() if "torso" in path} == {np.dtype(dtype)}
        assert {d for path, d in cast_dtypes.items() if "torso" not in path} == {np.dtype("float32")}
    scale = np.abs(outputs["float32"]).max()
    np.testing.assert_allclose(outputs["bfloat16"], outputs["float32"], atol=2e-2 * scale)
    assert not np.array_equal(outputs["bfloat16"], outputs["float32"])  # the bf16 path really ran


@pytest.mark.parametrize("bad", ["float16", "bf16"])
def test_a_bad_compute_dtype_is_a_one_line_error(bad):
    net = ActorCritic(action_dim=2, discrete=True, compute_dtype=bad)
    with pytest.raises(ValueError, match=f"^compute_dtype must be one of float32, bfloat16; got '{bad}'"):
        net.init(jax.random.key(0), jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match="compute_dtype must be one of"):
        cast_dense_weights({}, bad)


@pytest.mark.parametrize("layer,gain", [("actor_head", 0.01), ("critic_head", 1.0)])
def test_orthogonal_init_gains_and_zero_bias(layer, gain):
    net = ActorCritic(action_dim=3, discrete=True, hidden_sizes=(64, 64))
    params = net.init(jax.random.key(0), jnp.zeros((1, 4)))["params"]
    kernel = np.asarray(params[layer]["kernel"])  # [64, out]: orthonormal columns scaled by the gain
    np.testing.assert_allclose(kernel.T @ kernel, gain**2 * np.eye(kernel.shape[1]), atol=1e-5)
    np.testing.assert_array_equal(params[layer]["bias"], 0.0)
    hidden = np.asarray(params["actor_torso"]["Dense_1"]["kernel"])
    np.testing.assert_allclose(hidden.T @ hidden, 2.0 * np.eye(64), atol=1e-4)


def test_actor_and_critic_share_no_parameters():
    net = ActorCritic(action_dim=2, discrete=True)
    params = net.init(jax.random.key(0), jnp.zeros((1, 4)))["params"]
    assert set(params) == {"actor_torso", "actor_head", "critic_torso", "critic_head"}
    grads = jax.grad(lambda p: net.apply(p, jnp.ones((1, 4)), method=ActorCritic.value).sum())({"params": params})
    assert all(float(jnp.abs(g).sum()) == 0.0 for g in jax.tree.leaves(grads["params"]["actor_torso"]))


def test_vmapped_orthogonal_init_draws_what_each_key_draws_alone():
    keys = jax.random.split(jax.random.key(3), 5)
    batched = jax.jit(jax.vmap(lambda key: orthogonal(1.4)(key, (6, 4))))(keys)
    for i, key in enumerate(keys):
        np.testing.assert_array_equal(batched[i], nn.initializers.orthogonal(1.4)(key, (6, 4)))
        np.testing.assert_allclose(batched[i].T @ batched[i], 1.4**2 * np.eye(4), atol=1e-5)


# The initial state of many seeds at once, as the CLI computes it (jit of vmap of init), in a fresh process under
# a hard timeout: with the batched QR, 256 seeds deadlocked XLA's two-thread intra-op pool on two cores.
MANY_SEEDS_INIT = """
import jax, purerl
from purerl.control import ppo
keys = jax.random.split(jax.random.key(0), 256)
jax.block_until_ready(jax.jit(jax.vmap(ppo.init, in_axes=(0, None)))(keys, ppo.PPOConfig()))
print("initialised")
"""


@pytest.mark.timeout(150)
def test_initialising_many_seeds_at_once_does_not_hang():
    result = subprocess.run([sys.executable, "-c", MANY_SEEDS_INIT], capture_output=True, text=True, timeout=120)
    assert "initialised" in result.stdout, result.stderr[-2000:]


def test_an_ensemble_on_member_inputs_gives_member_k_slice_k():
    """``member_inputs``: member k reads only slice k, with the same parameters (and names) as the shared form."""
    shared = StateActionEnsemble(3, (16, 16))
    obs, action = jax.random.normal(jax.random.key(0), (3, 5, 4)), jax.random.normal(jax.random.key(1), (3, 5, 2))
    params = shared.init(jax.random.key(2), obs[0], action[0])
    own = StateActionEnsemble(3, (16, 16), member_inputs=True).apply(params, obs, action)
    assert own.shape == (3, 5)
    for k in range(3):
        np.testing.assert_allclose(own[k], shared.apply(params, obs[k], action[k])[k], rtol=1e-6)
