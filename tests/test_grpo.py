"""GRPO on control: grouped rollouts, advantages, the masked loss, determinism, validation."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from seed_checks import assert_vmapped_seed_equals_single_run

from purerl.control import grpo
from purerl.control.envs import EnvSpec
from purerl.control.grpo import GRPOConfig, compute_advantages, evaluate, grpo_loss, make_env, make_train, rollout
from purerl.control.policy import make_network
from purerl.core.networks import ActorCritic

SMALL = GRPOConfig(
    env="CartPole-v1",
    num_updates=3,
    num_groups=3,
    group_size=4,
    num_minibatches=2,
    update_epochs=2,
    hidden_sizes=(16, 16),
)


def init_policy(config: GRPOConfig, seed: int = 0):
    network = make_network(config)
    params = network.init(jax.random.key(seed), jnp.zeros((1, config.spec.obs_dim)), method=ActorCritic.policy)
    return network, params


def grouped_rollout(config: GRPOConfig, params, seed: int = 0) -> grpo.Trajectory:
    env = make_env(config, config.num_episodes, config.group_size)
    return rollout(env, make_network(config), params, jax.random.key(seed), config.horizon)


def test_policy_parameters_hold_no_critic():
    _, params = init_policy(SMALL)
    assert set(params["params"]) == {"actor_torso", "actor_head"}


def test_rollout_groups_share_initial_states_and_mask_after_the_episode_end():
    _, params = init_policy(SMALL)
    trajectory = grouped_rollout(SMALL, params)
    horizon, episodes = trajectory.valid.shape
    assert (horizon, episodes) == (500, 12)
    first_obs = np.asarray(trajectory.obs[0]).reshape(3, 4, -1)
    np.testing.assert_array_equal(first_obs, np.broadcast_to(first_obs[:, :1], first_obs.shape))
    assert not np.allclose(first_obs[0, 0], first_obs[1, 0])  # groups start from different states
    valid = np.asarray(trajectory.valid)
    lengths = valid.sum(axis=0)
    assert np.all(valid == (np.arange(horizon)[:, None] < lengths[None, :]))  # a prefix of each column
    assert np.all(lengths >= 1) and np.all(lengths < horizon)  # a random policy fails CartPole early
    np.testing.assert_array_equal(np.asarray(trajectory.reward), valid.astype(np.float32))  # 1 per valid step
    actions = np.asarray(trajectory.action)[:8].reshape(8, 3, 4)
    assert np.any(actions != actions[:, :, :1])  # members act with different keys


def test_deterministic_identical_rollouts_give_zero_advantage():
    """CartPole is deterministic; with a policy that always pushes left, every member of a group replays the
    same episode."""
    _, params = init_policy(SMALL)
    params["params"]["actor_head"]["bias"] = jnp.array([50.0, -50.0])
    trajectory = grouped_rollout(SMALL, params)
    lengths = np.asarray(trajectory.valid.sum(axis=0)).reshape(3, 4)
    assert np.all(lengths == lengths[:, :1])
    for advantage in ("outcome", "reward_to_go"):
        config = dataclasses.replace(SMALL, advantage=advantage)
        advantages = compute_advantages(config, trajectory.reward, trajectory.valid)
        assert np.all(np.asarray(advantages) == 0.0), advantage


def reference_advantages(config: GRPOConfig, reward: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Loops: discounted returns, then statistics per group (and per time index for reward_to_go)."""
    steps, episodes = reward.shape
    returns_to_go = np.zeros_like(reward, dtype=np.float64)
    for b in range(episodes):
        running = 0.0
        for t in reversed(range(steps)):
            running = reward[t, b] + config.gamma * running
            returns_to_go[t, b] = running
    out = np.zeros_like(returns_to_go)
    for g in range(config.num_groups):
        members = range(g * config.group_size, (g + 1) * config.group_size)
        for t in range(steps):
            if config.advantage == "outcome":
                scores = [returns_to_go[0, b] for b in members]
                taking_part = list(members)
                score_of = {b: returns_to_go[0, b] for b in members}
            else:
                taking_part = [b for b in members if valid[t, b]]
                scores = [returns_to_go[t, b] for b in taking_part]
                score_of = {b: returns_to_go[t, b] for b in taking_part}
            if not taking_part:
                continue
            mean = sum(scores) / len(scores)
            std = np.std(scores, ddof=1) if len(scores) > 1 else 0.0
            for b in taking_part:
                if valid[t, b]:
                    centred = score_of[b] - mean
                    out[t, b] = centred if config.advantage_scale == "none" else centred / (std + 1e-6)
    return out


@pytest.mark.parametrize("advantage", ["outcome", "reward_to_go"])
@pytest.mark.parametrize("scale", ["std", "none"])
def test_advantages_match_loops(advantage, scale):
    config = dataclasses.replace(SMALL, advantage=advantage, advantage_scale=scale, gamma=0.9)
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, size=config.num_episodes)
    valid = np.arange(8)[:, None] < lengths[None, :]
    reward = rng.normal(size=(8, config.num_episodes)).astype(np.float32) * valid
    advantages = np.asarray(compute_advantages(config, jnp.asarray(reward), jnp.asarray(valid)))
    np.testing.assert_allclose(advantages, reference_advantages(config, reward, valid), rtol=1e-4, atol=1e-5)
    if advantage == "outcome":  # every step of an episode gets its episode's advantage; zero mean per group
        per_episode = advantages[0].reshape(config.num_groups, config.group_size)
        np.testing.assert_allclose(per_episode.sum(axis=1), 0.0, atol=1e-5)


def small_minibatch(config: GRPOConfig, params, seed: int = 0) -> dict[str, jax.Array]:
    trajectory = grouped_rollout(config, params, seed)
    steps = 40  # every random-policy CartPole episode here ends well before 40 steps
    assert int(trajectory.valid.sum(axis=0).max()) < steps
    rng = np.random.default_rng(seed)
    return {
        "obs": trajectory.obs[:steps],
        "action": trajectory.action[:steps],
        "log_prob": trajectory.log_prob[:steps] + jnp.asarray(rng.normal(size=(steps, 12)) * 0.1, jnp.float32),
        "advantages": compute_advantages(config, trajectory.reward, trajectory.valid)[:steps],
        "valid": trajectory.valid[:steps],
        "ref_log_prob": trajectory.log_prob[:steps] + jnp.asarray(rng.normal(size=(steps, 12)) * 0.1, jnp.float32),
    }


@pytest.mark.parametrize("aggregation", ["grpo", "dapo", "dr_grpo"])
def test_loss_ignores_everything_after_the_episode_end(aggregation):
    config = dataclasses.replace(SMALL, beta=0.1, ent_coef=0.01, loss_aggregation=aggregation)
    network, params = init_policy(config)
    minibatch = small_minibatch(config, params)
    invalid = ~minibatch["valid"]
    rng = np.random.default_rng(1)
    changed = dict(minibatch)
    changed["obs"] = jnp.where(invalid[..., None], 1e3 * rng.normal(size=minibatch["obs"].shape), minibatch["obs"])
    changed["action"] = jnp.where(invalid, 1 - minibatch["action"], minibatch["action"])
    for name in ("log_prob", "advantages", "ref_log_prob"):
        changed[name] = jnp.where(invalid, 50.0, minibatch[name])

    def loss_and_grads(batch):
        return jax.value_and_grad(grpo_loss, has_aux=True)(params, network, config, batch)

    (loss, stats), grads = loss_and_grads(minibatch)
    (changed_loss, changed_stats), changed_grads = loss_and_grads(changed)
    assert float(loss) == pytest.approx(float(changed_loss), rel=1e-6)
    for name in stats:
        assert float(stats[name]) == pytest.approx(float(changed_stats[name]), rel=1e-5, abs=1e-7), name
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(changed_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_loss_matches_hand_computation():
    config = dataclasses.replace(SMALL, beta=0.05, ent_coef=0.02, clip_eps=0.1, clip_eps_high=0.3, kl_estimator="k3")
    network, params = init_policy(config)
    batch = small_minibatch(config, params)
    loss, stats = grpo_loss(params, network, config, batch)

    dist = network.apply(params, batch["obs"], method=ActorCritic.policy)
    new = np.asarray(dist.log_prob(batch["action"]), np.float64)
    entropy = np.asarray(dist.entropy(), np.float64)
    old, ref = np.asarray(batch["log_prob"], np.float64), np.asarray(batch["ref_log_prob"], np.float64)
    adv, valid = np.asarray(batch["advantages"], np.float64), np.asarray(batch["valid"])
    ratio = np.exp(new - old)
    surrogate = -np.minimum(ratio * adv, np.clip(ratio, 0.9, 1.3) * adv)
    kl = np.exp(ref - new) - 1 - (ref - new)
    per_step = surrogate - 0.02 * entropy + 0.05 * kl
    expected = np.mean([per_step[valid[:, b], b].mean() for b in range(per_step.shape[1])])
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    assert float(stats["kl_ref"]) == pytest.approx(kl[valid].mean(), rel=1e-4)
    assert float(stats["clip_fraction"]) == pytest.approx(np.mean((ratio[valid] < 0.9) | (ratio[valid] > 1.3)))


def test_kl_to_reference_is_zero_when_the_policy_is_the_reference():
    config = dataclasses.replace(SMALL, beta=0.5)
    network, params = init_policy(config)
    batch = small_minibatch(config, params)
    batch["ref_log_prob"] = network.apply(params, batch["obs"], method=ActorCritic.policy).log_prob(batch["action"])
    loss, stats = grpo_loss(params, network, config, batch)
    unpenalised, _ = grpo_loss(params, network, dataclasses.replace(config, beta=0.0), batch)
    assert float(stats["kl_ref"]) == pytest.approx(0.0, abs=1e-7)
    assert float(loss) == pytest.approx(float(unpenalised), rel=1e-6)


def test_same_key_same_result_and_vmapped_seed_equals_single_run():
    keys = jax.random.split(jax.random.key(7), 4)
    assert_vmapped_seed_equals_single_run(make_train(SMALL), keys, index=1)


def test_metrics_are_per_update_and_env_steps_count_valid_steps():
    state, metrics = jax.jit(make_train(SMALL))(jax.random.key(0))
    assert "kl_ref" not in metrics  # beta = 0 skips the reference entirely
    assert all(v.shape == (SMALL.num_updates,) for v in metrics.values())
    steps_per_update = np.diff(np.asarray(metrics["env_steps"]), prepend=0)
    np.testing.assert_allclose(steps_per_update, np.asarray(metrics["episode_length"]) * SMALL.num_episodes)
    # CartPole pays 1 per step: a return is a length.
    np.testing.assert_allclose(metrics["episode_return"], metrics["episode_length"])
    assert np.all(
        (np.asarray(metrics["zero_spread_fraction"]) >= 0) & (np.asarray(metrics["zero_spread_fraction"]) <= 1)
    )
    assert int(state.env_steps) == int(metrics["env_steps"][-1])


def test_reference_is_refreshed_every_interval():
    """With interval 1, the reference at the end of a 2-update run is the policy after the first update."""
    config = dataclasses.replace(SMALL, beta=0.04, ref_update_interval=1)
    one, metrics = jax.jit(make_train(dataclasses.replace(config, num_updates=1)))(jax.random.key(3))
    two, _ = jax.jit(make_train(dataclasses.replace(config, num_updates=2)))(jax.random.key(3))
    assert "kl_ref" in metrics
    for a, b in zip(jax.tree.leaves(one.train_state.params), jax.tree.leaves(two.ref_params), strict=True):
        np.testing.assert_array_equal(a, b)
    never, _ = jax.jit(make_train(dataclasses.replace(config, num_updates=2, ref_update_interval=0)))(jax.random.key(3))
    init_params = never.ref_params
    assert not np.allclose(jax.tree.leaves(init_params)[0], jax.tree.leaves(two.ref_params)[0])


def test_continuous_actions_train_and_evaluate():
    config = dataclasses.replace(SMALL, env="Pendulum-v1", num_updates=1, eval_episodes=3)
    state, metrics = jax.jit(make_train(config))(jax.random.key(0))
    assert float(metrics["episode_length"][0]) == 200.0  # Pendulum only ends at its time limit
    result = jax.jit(evaluate)(state, jax.random.key(1))
    assert result["returns"].shape == (3,) and np.all(np.asarray(result["lengths"]) == 200)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"group_size": 1}, "group_size must be >= 2 (a group of one has no baseline), got 1"),
        ({"num_minibatches": 5}, "num_groups*group_size=12 is not divisible by num_minibatches=5"),
        ({"advantage": "gae"}, "advantage must be one of outcome, reward_to_go; got 'gae'"),
        ({"advantage_scale": "max"}, "advantage_scale must be one of std, none; got 'max'"),
        ({"kl_estimator": "k4"}, "kl_estimator must be one of k2, k3; got 'k4'"),
        ({"loss_aggregation": "sum"}, "loss_aggregation must be one of grpo, dapo, dr_grpo; got 'sum'"),
        ({"beta": -0.1}, "beta must be >= 0, got -0.1"),
        ({"env": "Pong"}, "unknown env 'Pong'"),
    ],
)
def test_bad_config_gives_one_line_error(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        dataclasses.replace(SMALL, **overrides)


def test_env_without_a_time_limit_is_rejected(monkeypatch):
    spec = EnvSpec("CartPole-v1", 4, True, 2, None, None, None)
    monkeypatch.setattr(grpo, "env_spec", lambda name: spec)
    with pytest.raises(ValueError, match="CartPole-v1 has no finite horizon"):
        GRPOConfig()


def test_env_step_budget_freezes_each_seed_once_it_is_used():
    budget = 150
    config = dataclasses.replace(SMALL, num_updates=8, total_timesteps=budget, anneal_lr=True)
    keys = jax.random.split(jax.random.key(5), 3)
    states, metrics = jax.jit(jax.vmap(make_train(config)))(keys)
    steps, training = np.asarray(metrics["env_steps"]), np.asarray(metrics["training"])
    for seed in range(3):
        trained = training[seed] == 1.0
        last = int(trained.sum()) - 1
        assert trained[: last + 1].all() and not trained[last + 1 :].any()  # a prefix of the updates trains
        assert steps[seed, last] >= budget and (last == 0 or steps[seed, last - 1] < budget)
        assert np.all(steps[seed, last:] == steps[seed, last])
        steps_before = np.concatenate([[0], steps[seed, :last]])  # the learning rate anneals over the budget
        np.testing.assert_allclose(
            metrics["learning_rate"][seed, : last + 1], config.learning_rate * (1 - steps_before / budget), rtol=1e-5
        )
        # The final state is the state after the last training update: a run of exactly that many updates.
        exact, _ = jax.jit(make_train(dataclasses.replace(config, num_updates=last + 1)))(keys[seed])
        for a, b in zip(
            jax.tree.leaves(states.train_state.params), jax.tree.leaves(exact.train_state.params), strict=True
        ):
            np.testing.assert_allclose(a[seed], b, rtol=1e-5, atol=1e-6)
    assert training[:, 0].all() and not training[:, -1].any()  # with this budget every seed stops early


@pytest.mark.parametrize("estimator", ["k2", "k3"])
def test_kl_term_gradient_is_the_exact_kl_gradient(estimator):
    """Zero advantages and beta 1 leave only the KL term: its gradient, averaged exactly over the policy's
    actions (no sampling), equals the closed-form gradient of KL(pi || pi_ref) for k2 and of
    KL(pi_ref || pi) for k3 (purerl.core.kl), the two differing here."""
    config = dataclasses.replace(SMALL, beta=1.0, kl_estimator=estimator)
    network, params = init_policy(config)
    obs = jax.random.normal(jax.random.key(1), (5, config.spec.obs_dim))
    ref_log_probs = jax.nn.log_softmax(3.0 * jax.random.normal(jax.random.key(2), (5, 2)))  # far from pi
    actions = jnp.arange(2)

    def log_probs(p):  # [5, 2]: log pi(a | s) for every action
        dist = network.apply(p, obs[:, None], method=ActorCritic.policy)
        return dist.log_prob(jnp.broadcast_to(actions, (5, 2)))

    def loss_at(p, s: int, a: int):  # one step of one episode: obs s, action a
        minibatch = {
            "obs": obs[s][None, None],
            "action": actions[a][None, None],
            "log_prob": jax.lax.stop_gradient(log_probs(p))[s, a][None, None],
            "advantages": jnp.zeros((1, 1)),
            "valid": jnp.ones((1, 1), bool),
            "ref_log_prob": ref_log_probs[s, a][None, None],
        }
        return grpo_loss(p, network, config, minibatch)[0]

    pi = np.exp(np.asarray(log_probs(params)))
    grads = [[jax.grad(loss_at)(params, s, a) for a in range(2)] for s in range(5)]
    expected_grad = jax.tree.map(
        lambda *g: sum(pi[s, a] * g[2 * s + a] for s in range(5) for a in range(2)) / 5,
        *[g for row in grads for g in row],
    )

    def kl(p, reverse: bool):
        log_pi = log_probs(p)
        log_p, log_q = (ref_log_probs, log_pi) if reverse else (log_pi, ref_log_probs)
        return jnp.mean(jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1))

    exact = jax.grad(kl)(params, estimator == "k3")
    other = jax.grad(kl)(params, estimator == "k2")
    flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])  # noqa: E731
    np.testing.assert_allclose(flat(expected_grad), flat(exact), rtol=1e-4, atol=1e-6)
    assert np.abs(flat(exact) - flat(other)).max() > 0.1 * np.abs(flat(exact)).max()


def test_k1_is_refused_as_the_kl_loss_term():
    with pytest.raises(ValueError, match=r"kl_estimator='k1' cannot be a loss term: .*use k2 .* or k3"):
        dataclasses.replace(SMALL, beta=0.1, kl_estimator="k1")
