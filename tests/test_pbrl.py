"""Reward learning from comparisons: segments and the simulated teacher against numpy (the noise rate included),
the preference loss against its closed form, disagreement selection against a sort, the Bradley-Terry reward
model learning a known preference, vmapped == single, one-line errors, and PPO on the learned reward of 200
queries balancing CartPole from the command line."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from purerl.control import pbrl, ppo
from purerl.io import cli

SMALL = dict(total_timesteps=4 * 32 * 6, num_envs=4, num_steps=32, segment_length=8, queries=12, query_rounds=3,
             query_interval=2, heldout_pairs=8, reward_steps=5, reward_batch_size=4, hidden_sizes=(8,),
             reward_hidden_sizes=(8,), eval_episodes=4)  # fmt: skip


def rollout(config: pbrl.PbRLConfig, key: int = 0) -> ppo.Transition:
    """A rollout of a fresh policy: ``[T, B]``."""
    runner = ppo.init(jax.random.key(key), config)
    return ppo.rollout(runner, ppo.make_network(config), jax.random.key(key + 1))[1]


def test_segments_are_consecutive_steps_masked_after_their_first_episode_end():
    config = pbrl.PbRLConfig(**SMALL)
    traj = rollout(config)
    key = jax.random.key(5)
    segments = pbrl.cut_segments(key, traj, config, 50)
    start_key, env_key = jax.random.split(key)  # the plain way: the same draws, then a loop
    starts = np.asarray(jax.random.randint(start_key, (50,), 0, 32 - 8 + 1))
    envs = np.asarray(jax.random.randint(env_key, (50,), 0, 4))
    obs, actions, rewards, done = map(np.asarray, (traj.obs, traj.action, traj.reward, traj.done))
    for i in range(50):
        ended = False
        for j in range(8):
            t, b = starts[i] + j, envs[i]
            np.testing.assert_array_equal(segments.obs[i, j], obs[t, b])
            np.testing.assert_array_equal(segments.actions[i, j], np.eye(2)[actions[t, b]])  # one-hot
            assert segments.rewards[i, j] == rewards[t, b] and bool(segments.mask[i, j]) == (not ended)
            ended = ended or done[t, b]
    assert not np.asarray(segments.mask).all()  # some segment crossed an episode end (a fresh CartPole policy)


def test_the_teacher_against_numpy_rational_myopic_stochastic_and_noisy():
    rng = np.random.default_rng(0)
    n, length = 20_000, 5
    rewards = rng.normal(size=(2 * n, length)).astype(np.float32)
    mask = np.arange(length)[None] < rng.integers(1, length + 1, size=(2 * n, 1))
    rewards[:2], mask[:2] = 1.0, True  # one tie
    segments = pbrl.Segments(jnp.zeros((2 * n, length, 1)), jnp.zeros((2 * n, length, 1)), jnp.asarray(rewards),
                             jnp.asarray(mask))  # fmt: skip
    first, second = pbrl.pair_up(segments)

    def returns(gamma: float) -> np.ndarray:
        weights = gamma ** np.arange(length - 1, -1, -1)
        return (rewards * mask * weights).sum(axis=1)

    for gamma in (1.0, 0.7):
        config = pbrl.PbRLConfig(teacher_myopia=gamma)
        np.testing.assert_allclose(pbrl.teacher_returns(config, segments), returns(gamma), rtol=1e-5, atol=1e-6)
        labels = np.asarray(pbrl.teacher_labels(config, first, second, jax.random.key(1)))
        r = returns(gamma)
        np.testing.assert_array_equal(labels, np.where(r[0::2] > r[1::2], 1.0, np.where(r[0::2] < r[1::2], 0.0, 0.5)))
    assert labels[0] == 0.5  # the tie

    # Stochastic: P(first) = sigmoid(beta * (R_1 - R_2)); the labels' mean matches it within a binomial CI.
    config = pbrl.PbRLConfig(teacher_rationality=0.5)
    labels = np.asarray(pbrl.teacher_labels(config, first, second, jax.random.key(2)))
    p = 1 / (1 + np.exp(-0.5 * (returns(1.0)[0::2] - returns(1.0)[1::2])))
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert abs(labels.mean() - p.mean()) < 4 * math.sqrt((p * (1 - p)).sum()) / n

    # Noise: each rational label flipped with probability 0.2, a binomial count.
    rational = np.asarray(pbrl.teacher_labels(pbrl.PbRLConfig(), first, second, jax.random.key(3)))
    noisy = np.asarray(pbrl.teacher_labels(pbrl.PbRLConfig(label_noise=0.2), first, second, jax.random.key(3)))
    flipped = (noisy != rational).sum()
    assert stats.binomtest(int(flipped), n - 1, 0.2).pvalue > 1e-3  # the tie's 0.5 flips to itself
    np.testing.assert_array_equal(noisy[noisy != rational], 1 - rational[noisy != rational])


def test_the_preference_loss_is_bradley_terry_with_soft_labels():
    first, second = jnp.array([2.0, -1.0, 0.5]), jnp.array([0.5, 1.0, 0.5])
    labels = jnp.array([1.0, 0.0, 0.5])
    loss = np.asarray(pbrl.preference_loss(first, second, labels))
    log_sigmoid = lambda d: -math.log1p(math.exp(-d))  # noqa: E731
    expected = [-log_sigmoid(1.5), -log_sigmoid(2.0), -0.5 * log_sigmoid(0.0) - 0.5 * log_sigmoid(0.0)]
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_disagreement_selects_the_pairs_whose_member_probabilities_spread_most():
    config = pbrl.PbRLConfig(**SMALL | {"query_selection": "disagreement", "ensemble_size": 4})
    state = pbrl.init(jax.random.key(0), config)
    candidates = pbrl.cut_segments(jax.random.key(1), rollout(config), config, 2 * 40)
    chosen = pbrl.select(config, state.reward_model.params, candidates)
    params = state.reward_model.params

    def member_spread(segments: pbrl.Segments) -> np.ndarray:  # the std over members of sigmoid(R_1 - R_2), per pair
        first, second = pbrl.pair_up(segments)
        difference = pbrl.predicted_returns(params, config, first) - pbrl.predicted_returns(params, config, second)
        return np.std(1 / (1 + np.exp(-np.asarray(difference, np.float64))), axis=0)

    spread = member_spread(candidates)  # [40]
    top = np.sort(spread)[-config.queries_per_round :]
    np.testing.assert_allclose(np.sort(member_spread(chosen)), top, rtol=1e-6)
    assert np.sort(spread)[-config.queries_per_round - 1] < top[0]  # no tie at the cut: the choice is unique


def test_the_reward_model_learns_a_known_preference():
    """Segments of random observations whose true reward is w . obs; 64 labelled pairs train the ensemble to
    rank fresh pairs it never saw."""
    config = pbrl.PbRLConfig(**SMALL | {"queries": 64, "query_rounds": 1, "reward_steps": 300,
                                        "reward_batch_size": 32, "reward_hidden_sizes": (32,)})  # fmt: skip
    rng = np.random.default_rng(0)
    w = np.array([1.0, -2.0, 0.5, 1.5], np.float32)

    def segments(n: int) -> pbrl.Segments:
        obs = rng.normal(size=(n, 8, 4)).astype(np.float32)
        actions = np.eye(2, dtype=np.float32)[rng.integers(0, 2, size=(n, 8))]
        return pbrl.Segments(jnp.asarray(obs), jnp.asarray(actions), jnp.asarray(obs @ w), jnp.ones((n, 8), bool))

    state = pbrl.init(jax.random.key(0), config)
    train = segments(128)
    labels = pbrl.teacher_labels(config, *pbrl.pair_up(train), jax.random.key(1))
    state = state._replace(pairs=jax.tree.map(lambda x: x.reshape(64, 2, *x.shape[1:]), train), labels=labels,
                           labelled=jnp.ones(64, bool))  # fmt: skip
    before = pbrl.heldout_measures(config, state.reward_model.params, fresh := segments(400))
    model, fitted = jax.jit(pbrl.fit_reward_model)(state, jax.random.key(2))
    after = pbrl.heldout_measures(config, model.params, fresh)
    assert float(after["heldout_accuracy"]) >= 0.9 > float(before["heldout_accuracy"])
    assert float(after["return_correlation"]) >= 0.9 and float(fitted["reward_model_accuracy"]) == 1.0


def test_each_reward_model_fits_its_own_minibatch():
    """One Adam step's loss against the plain way: member k's Bradley-Terry loss on its own drawn rows (the
    ensemble applied to all rows, member k's output kept), in numpy, summed over members' means."""
    config = pbrl.PbRLConfig(**SMALL | {"reward_steps": 1, "ensemble_size": 3, "reward_batch_size": 5})
    state = pbrl.init(jax.random.key(0), config)
    pairs = pbrl.cut_segments(jax.random.key(1), rollout(config), config, 2 * config.queries)
    labels = jax.random.bernoulli(jax.random.key(2), 0.5, (config.queries,)).astype(jnp.float32)
    labelled = jnp.arange(config.queries) < 9  # three rows never labelled: never drawn
    state = state._replace(pairs=jax.tree.map(lambda x: x.reshape(config.queries, 2, *x.shape[1:]), pairs),
                           labels=labels, labelled=labelled)  # fmt: skip
    key = jax.random.key(3)
    _, fitted = pbrl.fit_reward_model(state, key)
    rows = np.asarray(jax.random.choice(jax.random.split(key, 1)[0], config.queries, (3, 5),
                                        p=labelled.astype(jnp.float32)))  # fmt: skip
    assert rows.max() < 9
    expected = []
    for k in range(3):
        own = jax.tree.map(lambda x, k=k: x[rows[k]], state.pairs)
        returns = np.asarray(pbrl.predicted_returns(state.reward_model.params, config, own), np.float64)[k]
        margin = returns[:, 0] - returns[:, 1]
        y = np.asarray(labels)[rows[k]]
        expected.append(np.mean(y * np.log1p(np.exp(-margin)) + (1 - y) * np.log1p(np.exp(margin))))
    np.testing.assert_allclose(float(fitted["reward_model_loss"]), np.mean(expected), rtol=1e-5)


def test_vmapped_seed_equals_a_single_run_and_queries_follow_the_schedule():
    config = pbrl.PbRLConfig(**SMALL)
    train = pbrl.make_train(config)
    keys = jax.random.split(jax.random.key(0), 3)
    states, metrics = jax.jit(jax.vmap(train))(keys)
    single_state, single = jax.jit(train)(keys[2])
    # Not bitwise: XLA compiles the reward model's fit differently under the seeds' vmap (its first gradient is
    # equal, its parameters 1e-8 apart after 5 steps), and Adam's eps of 1e-8 turns such noise in near-zero
    # gradients into full steps. The labels, drawn from the same keys, are equal
    np.testing.assert_allclose(metrics["loss"][2], single["loss"], rtol=1e-3)
    np.testing.assert_allclose(metrics["reward_model_loss"][2], single["reward_model_loss"], rtol=1e-3)
    np.testing.assert_array_equal(states.labels[2], single_state.labels)
    np.testing.assert_array_equal(single["queries"], [4, 4, 8, 8, 12, 12])  # 4 pairs at updates 0, 2 and 4
    assert bool(single_state.labelled.all())


def test_bad_settings_are_one_line_errors():
    cases = [
        ({"normalize_observations": True}, "^pbrl's reward model reads raw observations"),
        ({"segment_length": 40}, "^segment_length=40 exceeds num_steps=32"),
        ({"queries": 10}, "^queries=10 does not split evenly over query_rounds=3$"),
        ({"query_interval": 3}, r"^query_rounds=3 every 3 updates do not fit in the 6 updates"),
        ({"query_selection": "entropy"}, "^query_selection must be one of random, disagreement; got 'entropy'$"),
        ({"label_noise": 1.5}, r"^label_noise must be in \[0.0, 1.0\], got 1.5$"),
        ({"reward_hidden_sizes": (0,)}, r"^reward_hidden_sizes must be non-empty positive widths, got \(0,\)$"),
        ({"query_selection": "disagreement", "ensemble_size": 1}, "^query_selection=disagreement needs ensemble_size"),
    ]
    for fields, message in cases:
        with pytest.raises(ValueError, match=message):
            pbrl.PbRLConfig(**SMALL | fields)


@pytest.mark.learning
@pytest.mark.timeout(300)
def test_ppo_on_the_reward_learnt_from_200_queries_balances_cartpole(tmp_path, capsys):
    out = tmp_path / "pbrl"
    # The shipped config (150k env steps, 200 queries) on 4 seeds, whose IQM drops the lowest and the highest:
    # of 16 held-out seeds one ended at 289 and the others at 489 or more, and 97.8% of draws of 4 pass. Two
    # seeds at 100k steps passed on one CPU and failed on another (422 and 260; experiments/learning_tests).
    assert cli.main(["train", "pbrl", "--env", "CartPole-v1", "--seeds", "4", "--queries", "200",
                     "--eval-episodes", "16", "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval"]["iqm"] >= 400, summary["eval"]
    assert "tuned PbRL config" in capsys.readouterr().err
