"""DAgger: each round's aggregation against a loop, the expert mixture's beta, vmapped == single, one-line errors,
and the command a user runs reaching the expert's return from one demonstration episode."""

import json
import shutil
from functools import partial

import jax
import numpy as np
import pytest

from purerl.control import bc, dagger
from purerl.control.demonstrations import load_demos
from purerl.control.envs import vec_env
from purerl.control.evaluation import play_episodes
from purerl.core.streams import step_key
from purerl.io import cli
from purerl.io.run import read_metrics_csv

SHARES_THE_EXPERT = pytest.mark.xdist_group("cartpole_expert")  # one test worker trains it (conftest.py)


def small(demos, **fields) -> dagger.DAggerConfig:
    settings = dict(num_demo_episodes=1, num_updates=3, gradient_steps=5, batch_size=16, episodes_per_round=2,
                    hidden_sizes=(16,), eval_episodes=4)  # fmt: skip
    return dagger.DAggerConfig(env="CartPole-v1", demos=str(demos), **settings | fields)


@SHARES_THE_EXPERT
def test_each_round_adds_the_states_the_learner_visited_labelled_by_the_expert_and_fits_with_all_their_statistics(
    cartpole_expert,
):
    expert, demos = cartpole_expert
    config = small(demos)
    policy, expert_state, _ = dagger.load_expert(str(expert), 0)  # the demonstrations' first expert seed
    arrays, _ = load_demos(str(demos))
    update = jax.jit(dagger.update)
    state = dagger.init(jax.random.key(0), config)
    visited, labels, lengths = [], [], []  # the plain way: append each round's played steps to a list
    for index in range(config.num_updates):
        if index > 0:  # round `index` plays the learner as it stands before the round's update
            play_key, label_key = jax.random.split(step_key(state.streams.rollout, index))
            mixture = partial(lambda s, obs: dagger.ExpertMixture(bc.policy(s, obs), policy(expert_state, obs), 0.0,
                                                                  False), state)  # fmt: skip
            played = play_episodes(mixture, vec_env("CartPole-v1", 2), play_key, 500, record=True)
            obs = np.asarray(played["observations"]).reshape(-1, 4)
            round_labels = np.asarray(policy(expert_state, obs).sample(seed=label_key))
            for row in np.flatnonzero(np.asarray(played["active"]).reshape(-1)):
                visited.append(obs[row])
                labels.append(round_labels[row])
            lengths.append(int(played["lengths"].sum()))
        state, metrics = update(state, index)
        rows = np.asarray(state.learner_rows_used)
        assert rows.sum() == len(visited) and not rows[index * 1000 :].any()  # round r fills slot r - 1 only
        np.testing.assert_array_equal(np.asarray(state.learner_obs)[rows], np.array(visited).reshape(-1, 4))
        np.testing.assert_array_equal(np.asarray(state.learner_actions)[rows], np.array(labels, np.int32))
        demo_steps = int((np.asarray(state.step_weights) > 0).sum())
        assert int(metrics["dataset_size"]) == demo_steps + len(visited)
        data = np.concatenate([arrays["observations"][np.asarray(state.step_weights) > 0], *[v[None] for v in visited]])
        np.testing.assert_allclose(state.obs_stats.mean, data.mean(axis=0), rtol=1e-4, atol=1e-5)  # the round's fit
        np.testing.assert_allclose(state.obs_stats.var, data.var(axis=0), rtol=1e-3, atol=1e-6)  # standardised by all
        assert int(metrics["expert_queries"]) == int(metrics["env_steps"]) == sum(lengths) == len(visited)
    assert demo_steps in arrays["episode_lengths"] and len(visited) > 0  # one whole expert episode; the learner's


@SHARES_THE_EXPERT
def test_beta_one_executes_the_expert_and_beta_zero_the_learner(cartpole_expert):
    _, demos = cartpole_expert
    returns = {}
    for beta in (0.0, 1.0):
        _, metrics = jax.jit(dagger.make_train(small(demos, beta=beta, gradient_steps=1)))(jax.random.key(1))
        returns[beta] = np.asarray(metrics["episode_return"])
    assert np.isnan(returns[0.0][0]) and np.isnan(returns[1.0][0])  # round 0 plays nothing
    assert np.all(returns[1.0][1:] >= 475)  # the expert's own episodes (it returns 500)
    assert np.all(returns[0.0][1:] < 200)  # a learner after two Adam steps is no expert


@SHARES_THE_EXPERT
def test_vmapped_seed_equals_a_single_run(cartpole_expert):
    _, demos = cartpole_expert
    train = dagger.make_train(small(demos))
    keys = jax.random.split(jax.random.key(0), 3)
    states, metrics = jax.jit(jax.vmap(train))(keys)
    single_state, single = jax.jit(train)(keys[2])
    np.testing.assert_allclose(metrics["loss"][2], single["loss"], rtol=1e-5)
    np.testing.assert_array_equal(metrics["expert_queries"][2], single["expert_queries"])
    np.testing.assert_array_equal(states.learner_obs[2], single_state.learner_obs)


@SHARES_THE_EXPERT
def test_bad_settings_are_one_line_errors(cartpole_expert, tmp_path):
    expert, demos = cartpole_expert
    with pytest.raises(ValueError, match=r"^--expert-seed-index 5: the expert run has seeds 0\.\.1$"):
        small(demos, expert_seed_index=5)
    with pytest.raises(ValueError, match=r"^the expert '.*' is not a purerl run"):
        small(demos, expert=str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match=r"^beta must be in \[0, 1\], got 1.5$"):
        small(demos, beta=1.5)
    with pytest.raises(ValueError, match=r"^num_updates must be >= 2 \(round 0 is BC on the demonstrations; for BC "):
        small(demos, num_updates=1)  # it crashed in the compiled program: no learner rows to write to
    with pytest.raises(ValueError, match=r"^num_demo_episodes must be a whole number, got 1.5$"):
        small(demos, num_demo_episodes=1.5)  # a sweep's value; it trained on 2 episodes, labelled 1.5
    arrays, meta = load_demos(str(demos))
    acrobot = {name: value[:500] for name, value in arrays.items()} | {"observations": np.zeros((500, 6), np.float32)}
    np.savez(tmp_path / "demos.npz", **acrobot)  # hand-made demonstrations that name no expert
    (tmp_path / "demos.json").write_text(json.dumps({"env": "Acrobot-v1", "episodes": 1}))
    with pytest.raises(ValueError, match=r"does not say which run wrote them; name the expert: --expert RUN$"):
        dagger.DAggerConfig(env="Acrobot-v1", demos=str(tmp_path))
    with pytest.raises(ValueError, match=r"^the expert .* learnt CartPole-v1, not Acrobot-v1$"):
        dagger.DAggerConfig(env="Acrobot-v1", demos=str(tmp_path), expert=str(expert))


@SHARES_THE_EXPERT
def test_a_resume_refuses_an_expert_trained_again_in_its_directory(cartpole_expert, tmp_path, capsys):
    """Another seed, the same config.json: the expert's parameters are its fingerprint, not its config file
    (which let this pass unnoticed, and the process's copy of the old expert would have labelled the rest)."""
    _, demos = cartpole_expert
    expert, run = tmp_path / "expert", tmp_path / "dagger"
    tiny_expert = ["train", "ppo", "--env", "CartPole-v1", "--config", "defaults", "--num-envs", "4",
                   "--num-steps", "8", "--total-timesteps", "64", "--seeds", "1", "--eval-episodes", "1",
                   "--out", str(expert)]  # fmt: skip
    assert cli.main(tiny_expert) == 0
    assert cli.main(["train", "dagger", "--demos", str(demos), "--expert", str(expert), "--seeds", "1",
                     "--num-demo-episodes", "1", "--num-updates", "2", "--gradient-steps", "2", "--batch-size", "8",
                     "--episodes-per-round", "1", "--eval-episodes", "1", "--out", str(run)]) == 0  # fmt: skip
    shutil.rmtree(expert)
    assert cli.main([*tiny_expert, "--seed", "1"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "dagger", "--resume", str(run)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"input expert {expert} seed 0 changed since (SHA-256 " in err, err


@pytest.mark.learning
@SHARES_THE_EXPERT
@pytest.mark.timeout(300)
def test_dagger_from_one_expert_episode_reaches_the_experts_return(cartpole_expert, tmp_path, capsys):
    _, demos = cartpole_expert
    out = tmp_path / "dagger"
    assert cli.main(["train", "dagger", "--demos", str(demos), "--seeds", "4", "--num-demo-episodes", "1",
                     "--num-updates", "4", "--gradient-steps", "300", "--eval-episodes", "16",
                     "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())  # 16 held-out seeds all reach 500
    assert summary["eval"]["iqm"] >= 450, summary["eval"]
    metrics = read_metrics_csv(out / "metrics.csv")
    np.testing.assert_array_equal(metrics["expert_queries"], metrics["env_steps"])  # the expert labels every step
    assert np.all(np.diff(metrics["expert_queries"], axis=1) > 0)  # every round queries it
    captured = capsys.readouterr()
    assert "DAgger on CartPole-v1: 4 seeds x" in captured.out
    # a round per chunk: progress every round, and a stop or a timed checkpoint need not wait for the others
    assert json.loads((out / "run.json").read_text())["chunk_updates"] == 1 and "2/4 updates" in captured.err
