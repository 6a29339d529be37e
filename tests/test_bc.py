"""Expert demonstrations and behavioural cloning: the format against a loop, the BC loss against its closed form,
each seed's episodes and statistics against numpy, vmapped == single, and the whole path a user runs (train an
expert, purerl collect, purerl train bc) reaching the expert's return."""

import json
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.control import bc
from purerl.control.demonstrations import flatten_episodes, load_demos
from purerl.core.networks import ActorCritic
from purerl.io import cli


def test_flatten_episodes_keeps_each_episodes_steps_in_order_as_a_loop_does():
    rng = np.random.default_rng(0)
    seeds, steps, envs = 2, 6, 3
    lengths = rng.integers(1, steps + 1, size=(seeds, envs))
    active = np.arange(steps)[None, :, None] < lengths[:, None, :]  # [S, T, E]: the first episode's steps
    played = {
        "observations": rng.normal(size=(seeds, steps, envs, 2)),
        "actions": rng.integers(0, 3, size=(seeds, steps, envs)),
        "rewards": rng.normal(size=(seeds, steps, envs)),
        "active": active,
        "returns": rng.normal(size=(seeds, envs)),
        "terminated": rng.random(size=(seeds, envs)) < 0.5,
    }
    out = flatten_episodes(played, np.array([4, 7]), discrete=True)
    rows = [(s, e, t) for s in range(seeds) for e in range(envs) for t in range(lengths[s, e])]  # the plain way
    expected_obs = [played["observations"][s, t, e] for s, e, t in rows]
    np.testing.assert_allclose(out["observations"], expected_obs, rtol=1e-6)  # stored as float32
    np.testing.assert_array_equal(out["actions"], [played["actions"][s, t, e] for s, e, t in rows])
    np.testing.assert_allclose(out["rewards"], [played["rewards"][s, t, e] for s, e, t in rows], rtol=1e-6)
    np.testing.assert_array_equal(out["episode"], [s * envs + e for s, e, _ in rows])
    np.testing.assert_array_equal(out["episode_lengths"], lengths.reshape(-1))
    np.testing.assert_array_equal(out["episode_seeds"], [4, 4, 4, 7, 7, 7])
    assert out["actions"].dtype == np.int32 and out["observations"].dtype == np.float32


def loss_of(config: bc.BCConfig, obs: np.ndarray, actions: np.ndarray):
    """BC's loss of a fresh policy at ``obs``, and the policy's output (logits, or mean and log-std)."""
    network = bc.make_network(config)
    params = network.init(jax.random.key(0), jnp.zeros((1, obs.shape[1])), method=ActorCritic.policy)
    loss, _ = bc.bc_loss(params, config, jnp.asarray(obs), jnp.asarray(actions))
    dist = network.apply(params, jnp.asarray(obs), method=ActorCritic.policy)
    return float(loss), dist


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """Hand-made demonstrations of two envs: CartPole (discrete) and Pendulum (continuous), 5 episodes each."""
    rng = np.random.default_rng(1)
    out = {}
    for env, obs_dim, actions in (("CartPole-v1", 4, lambda n: rng.integers(0, 2, n)),
                                  ("Pendulum-v1", 3, lambda n: rng.uniform(-2, 2, (n, 1))),):  # fmt: skip
        lengths = np.array([3, 5, 2, 4, 6])
        n = lengths.sum()
        arrays = {
            "observations": rng.normal(2.0, 3.0, (n, obs_dim)).astype(np.float32),
            "actions": actions(n).astype(np.int32 if env == "CartPole-v1" else np.float32),
            "rewards": np.ones(n, np.float32),
            "episode": np.repeat(np.arange(5, dtype=np.int32), lengths),
            "episode_returns": lengths.astype(np.float32),
            "episode_lengths": lengths.astype(np.int32),
            "episode_terminated": np.ones(5, bool),
            "episode_seeds": np.zeros(5, np.int32),
        }
        directory = tmp_path_factory.mktemp(env)
        np.savez(directory / "demos.npz", **arrays)
        (directory / "demos.json").write_text(json.dumps({"env": env, "episodes": 5}))
        out[env] = str(directory)
    return out


def test_the_loss_is_the_negative_log_likelihood_in_closed_form(demos):
    arrays, _ = load_demos(demos["CartPole-v1"])
    config = bc.BCConfig(env="CartPole-v1", demos=demos["CartPole-v1"])
    loss, dist = loss_of(config, arrays["observations"], arrays["actions"])
    logits = np.asarray(dist.logits, np.float64)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean(log_softmax[np.arange(len(logits)), arrays["actions"]])  # cross-entropy
    assert loss == pytest.approx(expected, rel=1e-5)

    arrays, _ = load_demos(demos["Pendulum-v1"])
    config = bc.BCConfig(env="Pendulum-v1", demos=demos["Pendulum-v1"], log_std_init=-0.5)
    loss, dist = loss_of(config, arrays["observations"], arrays["actions"])
    mean, std = np.asarray(dist.loc, np.float64), np.asarray(dist.scale_diag, np.float64)
    z = (arrays["actions"] - mean) / std
    expected = np.mean(np.sum(0.5 * z**2 + np.log(std) + 0.5 * np.log(2 * np.pi), axis=1))  # Gaussian NLL
    assert loss == pytest.approx(expected, rel=1e-5)


def test_each_seed_trains_on_its_own_episodes_with_their_statistics(demos):
    arrays, _ = load_demos(demos["Pendulum-v1"])
    config = bc.BCConfig(env="Pendulum-v1", demos=demos["Pendulum-v1"], num_demo_episodes=2)
    states = jax.vmap(bc.init, in_axes=(0, None))(jax.random.split(jax.random.key(3), 6), config)
    chosen_sets = set()
    stats = states.obs_stats
    for weights, mean, var in zip(*map(np.asarray, (states.step_weights, stats.mean, stats.var)), strict=True):
        episodes = np.unique(arrays["episode"][weights > 0])
        assert len(episodes) == 2  # exactly num_demo_episodes whole episodes
        trained = np.isin(arrays["episode"], episodes)
        np.testing.assert_allclose(weights[trained], 1 / trained.sum(), rtol=1e-6)
        np.testing.assert_allclose(mean, arrays["observations"][trained].mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(var, arrays["observations"][trained].var(axis=0), rtol=2e-4)
        chosen_sets.add(tuple(episodes))
    assert len(chosen_sets) > 1  # seeds draw different episodes
    # A sweep traces the count (one compile for every n); a seed's n episodes are the first n of one order.
    traced = jax.jit(bc.init)(jax.random.key(3), config.trace(num_demo_episodes=jnp.asarray(4.0)))
    two = np.asarray(bc.init(jax.random.key(3), config).step_weights) > 0
    four = np.asarray(traced.step_weights) > 0
    assert len(np.unique(arrays["episode"][four])) == 4 and np.all(four[two])


def test_vmapped_seed_equals_a_single_run_and_the_same_key_the_same_result(demos):
    config = bc.BCConfig(env="CartPole-v1", demos=demos["CartPole-v1"], num_updates=20, batch_size=8)
    keys = jax.random.split(jax.random.key(0), 3)
    states, metrics = jax.jit(jax.vmap(bc.make_train(config)))(keys)
    single_state, single = jax.jit(bc.make_train(config))(keys[2])
    np.testing.assert_allclose(metrics["loss"][2], single["loss"], rtol=1e-6)
    params, single_params = states.train_state.params, single_state.train_state.params
    for leaf, single_leaf in zip(jax.tree.leaves(params), jax.tree.leaves(single_params), strict=True):
        np.testing.assert_allclose(leaf[2], single_leaf, rtol=1e-5, atol=1e-7)
    assert float(metrics["loss"][2, -1]) < float(metrics["loss"][2, 0])  # it fits the demonstrations


def test_bad_settings_are_one_line_errors(demos, tmp_path):
    with pytest.raises(ValueError, match=r"^bc needs demonstrations: --demos DIR"):
        bc.BCConfig(env="CartPole-v1")
    with pytest.raises(ValueError, match=r"^env 'Acrobot-v1' is not the demonstrations' env 'CartPole-v1'"):
        bc.BCConfig(env="Acrobot-v1", demos=demos["CartPole-v1"])
    with pytest.raises(ValueError, match=r"^num_demo_episodes=6 but .* holds 5 episodes$"):
        bc.BCConfig(env="CartPole-v1", demos=demos["CartPole-v1"], num_demo_episodes=6)
    with pytest.raises(ValueError, match=r"^compute_dtype must be one of float32, bfloat16; got 'float16'$"):
        bc.BCConfig(env="CartPole-v1", demos=demos["CartPole-v1"], compute_dtype="float16")  # before: at compile
    with pytest.raises(ValueError, match=r"is not a demonstration directory \(purerl collect\)"):
        bc.BCConfig(env="CartPole-v1", demos=str(tmp_path))
    (tmp_path / "demos.json").write_text("{}")  # a demos.npz beside it, but no env in its metadata
    (tmp_path / "demos.npz").write_bytes((Path(demos["CartPole-v1"]) / "demos.npz").read_bytes())
    with pytest.raises(ValueError, match=r"is not a demonstration directory \(purerl collect\): .*lacks env, episodes"):
        bc.BCConfig(env="CartPole-v1", demos=str(tmp_path))
    # Collected again into the same directory: read again, not this process's copy of the old files (whose
    # arrays a run would train on while hashing the new ones as its input).
    (tmp_path / "demos.json").write_text((Path(demos["CartPole-v1"]) / "demos.json").read_text())
    arrays, _ = load_demos(str(tmp_path))
    half = {name: array[: len(array) // 2] for name, array in arrays.items()}
    np.savez(tmp_path / "demos.npz", **half)
    assert len(load_demos(str(tmp_path))[0]["actions"]) == len(half["actions"])
    meta = json.loads((tmp_path / "demos.json").read_text())
    (tmp_path / "demos.json").write_text(json.dumps(meta | {"episodes": 1}))
    with pytest.raises(ValueError, match=r"^num_demo_episodes=2 but .* holds 1 episode$"):
        bc.BCConfig(env="CartPole-v1", demos=str(tmp_path), num_demo_episodes=2)
    np.savez(tmp_path / "demos.npz", **half | {"observations": np.array([{"pickled": 1}], dtype=object)})
    with pytest.raises(ValueError, match=r"demos.npz holds Python objects, which purerl never writes") as error:
        load_demos(str(tmp_path))
    assert "allow_pickle" not in str(error.value)  # numpy's advice would unpickle untrusted data


def test_collect_refuses_what_it_cannot_serve_in_one_line(tmp_path, capsys):
    run = tmp_path / "tiny"
    assert cli.main(["train", "ppo", "--seeds", "2", "--total-timesteps", "512", "--num-envs", "4", "--num-steps",
                     "32", "--eval-episodes", "2", "--out", str(run)]) == 0  # fmt: skip
    unfinished = tmp_path / "unfinished"
    subprocess.run(["cp", "-r", str(run), str(unfinished)], check=True)
    (unfinished / "summary.json").unlink()
    capsys.readouterr()
    multiple = "--episodes must be a positive multiple of the 2 expert seed(s), got 3"
    cases = [
        (["--from", str(run), "--episodes", "4", "--seed-index", "2"], "--seed-index 2: the run has seeds 0..1"),
        (["--from", str(run), "--episodes", "3"], multiple),
        (["--from", str(unfinished), "--episodes", "2"], "has not finished training; finish it first: purerl train"),
        (["--from", str(tmp_path / "none"), "--episodes", "2"], f"--from '{tmp_path / 'none'}' is not a purerl run"),
        (["--from", str(run), "--episodes", "2", "--seed-index", "0", "--seed-index", "0"], "names a seed twice: 0 0"),
    ]
    for flags, message in cases:
        with pytest.raises(SystemExit) as stop:
            cli.main(["collect", *flags, "--out", str(tmp_path / "demos")])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and message in err and err.count("\n") == 1, err
    assert cli.main(["collect", "--from", str(run), "--episodes", "2", "--seed-index", "1", "--out",
                     str(tmp_path / "demos")]) == 0  # fmt: skip
    assert load_demos(str(tmp_path / "demos"))[1]["expert"]["seeds"] == [1]


@pytest.mark.learning
@pytest.mark.xdist_group("cartpole_expert")
@pytest.mark.timeout(300)
def test_collect_then_bc_from_the_command_line_reaches_the_experts_return(cartpole_expert, tmp_path, capsys):
    expert, demos = cartpole_expert
    clone = tmp_path / "bc"
    arrays, meta = load_demos(str(demos))
    assert meta["env"] == "CartPole-v1" and meta["episodes"] == 8 and meta["expert"]["seeds"] == [0, 1]
    for episode in range(8):  # each episode's rewards add up to its return; CartPole's reward is 1 per step
        rewards = arrays["rewards"][arrays["episode"] == episode]
        assert rewards.sum() == arrays["episode_returns"][episode] == arrays["episode_lengths"][episode]
    assert meta["mean_return"] >= 475  # the expert is one
    with pytest.raises(SystemExit):  # the same --out again would overwrite what was collected
        cli.main(["collect", "--from", str(expert), "--episodes", "8", "--out", str(demos)])
    assert "already holds demonstrations" in capsys.readouterr().err
    assert cli.main(["train", "bc", "--demos", str(demos), "--seeds", "4", "--num-demo-episodes", "4",
                     "--num-updates", "500", "--eval-episodes", "16", "--out", str(clone)]) == 0  # fmt: skip
    summary = json.loads((clone / "summary.json").read_text())  # every held-out draw of 4 passes (lowest 474)
    assert summary["env"] == "CartPole-v1" and summary["eval"]["iqm"] >= 400, summary["eval"]
    out = capsys.readouterr()
    assert "BC on CartPole-v1: 4 seeds x demonstrations (no env steps)" in out.out
    assert "train loss" in out.out and summary["train"]["metric"] == "loss"  # BC's curve: its loss, by update
    assert "loss 0." in out.err  # the progress bar shows it too


def test_a_resume_refuses_demonstrations_changed_since(demos, tmp_path, capsys):
    copy, run = tmp_path / "demos", tmp_path / "bc"
    subprocess.run(["cp", "-r", demos["CartPole-v1"], str(copy)], check=True)
    flags = ["--num-updates", "4", "--batch-size", "4", "--eval-episodes", "2", "--seeds", "1", "--out", str(run)]
    assert cli.main(["train", "bc", "--demos", str(copy), *flags]) == 0
    arrays = dict(np.load(copy / "demos.npz"))
    np.savez(copy / "demos.npz", **arrays | {"actions": 1 - arrays["actions"]})  # relabelled in place
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "bc", "--resume", str(run)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"input {copy}/demos.npz changed since (SHA-256 " in err, err
    assert err.count("\n") == 1  # the one line, and no "compiling ..." before it: nothing compiles

    np.savez(copy / "demos.npz", **{name: array[: len(array) // 2] for name, array in arrays.items()})  # fewer
    with pytest.raises(SystemExit) as stop:  # a new size is no state-shape error: the input changed
        cli.main(["train", "bc", "--resume", str(run)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"input {copy}/demos.npz changed since (SHA-256 " in err, err
    subprocess.run(["rm", "-r", str(copy)], check=True)  # gone: the error names the directory, not a flag
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "bc", "--resume", str(run)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"'{copy}' is not a demonstration directory" in err and "--demos" not in err, err
