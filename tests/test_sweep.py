"""Sweeps: a grid point inside the vmapped sweep equals a plain run with that config; unsweepable fields and
bad values fail in one line; the CLI writes its tables and figures."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from purerl.control import grpo, ppo
from purerl.control.evaluation import select_seed
from purerl.core.stats import learning_curve_auc
from purerl.io import cli
from purerl.io.sweep import expand_grid, normalized_scores, parse_grid, sweep_base_config

PPO_SMALL = ppo.PPOConfig(total_timesteps=3 * 128, num_envs=4, num_steps=32, hidden_sizes=(16,))
GRPO_SMALL = grpo.GRPOConfig(num_updates=3, num_groups=2, group_size=4, num_minibatches=2, hidden_sizes=(16,))


@pytest.mark.parametrize(
    ("module", "config", "grid"),
    [
        (ppo, PPO_SMALL, {"learning_rate": [1e-3, 3e-4], "gae_lambda": [0.9, 0.95], "clip_eps": [0.1, 0.3]}),
        (grpo, GRPO_SMALL, {"beta": [0.0, 0.1], "clip_eps": [0.1, 0.2], "learning_rate": [1e-2, 3e-3]}),
    ],
)
def test_sweep_point_equals_a_plain_run_with_that_config(module, config, grid):
    points = grid  # two points: the i-th value of every field
    base = sweep_base_config(config, grid)
    keys = jax.random.split(jax.random.key(0), 2)
    traced = base.trace(**{name: np.asarray(values, np.float32) for name, values in points.items()})
    states, metrics = jax.jit(jax.vmap(module.make_train(base)))(keys, traced)
    for p in range(2):
        plain = dataclasses.replace(config, **{name: values[p] for name, values in points.items()})
        state, plain_metrics = jax.jit(module.make_train(plain))(keys[p])
        for name in ("loss", "episode_return", "learning_rate"):
            np.testing.assert_allclose(metrics[name][p], plain_metrics[name], rtol=2e-5, atol=1e-6, err_msg=name)
        swept = jax.tree.leaves(select_seed(states.train_state.params, p))
        for a, b in zip(swept, jax.tree.leaves(state.train_state.params), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_grid_expands_to_the_cartesian_product_last_field_fastest():
    points = expand_grid({"learning_rate": [1.0, 2.0], "ent_coef": [0.0, 0.1, 0.2]})
    assert points["learning_rate"] == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    assert points["ent_coef"] == [0.0, 0.1, 0.2] * 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hidden_sizes=8,16", "hidden_sizes cannot be swept in one compile"),
        ("num_envs=4,8", "num_envs cannot be swept in one compile"),
        ("learning_rat=1e-3", "learning_rat is not a field of PPOConfig; sweepable: learning_rate"),
        ("learning_rate", "expected FIELD=V1,V2"),
        ("learning_rate=fast", "values must be numbers"),
        ("learning_rate=-1e-3", "learning_rate must be > 0, got -0.001"),
        ("gamma=0.9,1.5", "gamma must be in [0.0, 1.0], got 1.5"),
    ],
)
def test_bad_grids_fail_in_one_line_naming_the_field(spec, message):
    with pytest.raises(ValueError) as error:
        parse_grid(PPO_SMALL, [spec])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_field_given_twice_is_refused():
    with pytest.raises(ValueError, match="ent_coef is given twice"):
        parse_grid(PPO_SMALL, ["ent_coef=0", "ent-coef=0.01"])


def test_grpo_beta_sweep_compiles_the_reference_pass():
    grid = parse_grid(GRPO_SMALL, ["beta=0,0.04"])
    assert sweep_base_config(GRPO_SMALL, grid).beta == 0.04


def test_normalized_scores_use_the_env_range_else_the_sweeps_own_and_no_spread_gives_zero():
    returns = np.array([[100.0, 300.0], [500.0, 0.0]])
    scores, note = normalized_scores("CartPole-v1", returns)
    np.testing.assert_allclose(scores, returns / 500.0)
    assert "CartPole-v1" in note
    scores, note = normalized_scores("Pendulum-v1", np.array([[-900.0, -300.0], [-150.0, -1200.0]]))
    np.testing.assert_allclose(scores, [[300 / 1050, 900 / 1050], [1.0, 0.0]])  # low -1200, high -150
    assert "this sweep" in note
    equal = np.full((2, 3), np.float32(-123.4))  # was a division by zero: NaN scores and figures
    scores, note = normalized_scores("Pendulum-v1", equal)
    assert np.all(scores == 0.0) and note.startswith("none: every per-seed return is -123.4")


def test_learning_curve_auc_is_the_trapezoid_average_and_skips_nan():
    steps = np.array([[0.0, 1.0, 3.0], [0.0, 1.0, 3.0]])
    values = np.array([[0.0, 2.0, 2.0], [np.nan, 1.0, 3.0]])
    # (0+2)/2*1 + (2+2)/2*2 = 5 over 3 steps; second: only steps 1..3, (1+3)/2*2 = 4 over 2 steps.
    np.testing.assert_allclose(learning_curve_auc(steps, values), [5 / 3, 2.0])


def test_sweep_cli_writes_tables_and_figures(tmp_path, capsys):
    out = tmp_path / "sweep"
    flags = ["--total-timesteps", "1024", "--num-envs", "4", "--num-steps", "64", "--hidden-sizes", "8"]
    argv = ["sweep", "ppo", "--grid", "learning_rate=1e-3,3e-4", "--grid", "ent_coef=0,0.01", "--seeds", "3"]
    assert cli.main([*argv, *flags, "--eval-episodes", "4", "--out", str(out)]) == 0
    for name in ("sweep.json", "sweep.md", "curves.png", "aggregate.png", "profiles.png", "metrics.csv"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["num_points"] == 4 and summary["num_seeds"] == 3
    rows = summary["points"]
    assert [row["hyperparameters"] for row in rows][1] == {"learning_rate": 1e-3, "ent_coef": 0.01}
    for row in rows:
        assert row["eval_return_ci"][0] <= row["eval_return_iqm"] <= row["eval_return_ci"][1]
        assert len(row["eval_return_per_seed"]) == 3
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("point,seed,update,")
    assert "eval return IQM" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("module", "config"),
    [(ppo, PPO_SMALL), (grpo, dataclasses.replace(GRPO_SMALL, beta=0.05, clip_eps_high=0.3))],
)
def test_update_with_every_sweepable_field_traced_equals_the_static_run(module, config):
    """With every sweepable field a traced leaf holding its static value, the whole run traces (no Python
    branch reads a sweepable field) and equals the static run; the sweep-point test above checks that the
    traced values are the ones each run uses."""
    traced = config.trace(**{name: getattr(config, name) for name in type(config).sweepable()})
    assert set(traced.traced) == set(type(config).sweepable()) and len(jax.tree.leaves(traced)) == len(traced.traced)
    assert jax.tree.leaves(config) == []  # nothing traced: every field a compile-time constant
    key = jax.random.key(3)
    _, static_metrics = jax.jit(module.make_train(config))(key)
    _, traced_metrics = jax.jit(module.make_train(config))(key, traced)
    for name in ("loss", "episode_return", "learning_rate", "entropy"):
        np.testing.assert_allclose(traced_metrics[name], static_metrics[name], rtol=2e-5, atol=1e-6, err_msg=name)
