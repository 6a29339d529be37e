"""Behavioural cloning and DAgger against the number of expert-labelled episodes, and the distribution shift
that separates them.

    python experiments/imitation/bc_dagger.py                       # every env, 16 seeds
    python experiments/imitation/bc_dagger.py --envs CartPole-v1    # some envs

Per env: a PPO expert (one seed of a finished purerl run: by default the 16-seed benchmark runs under
``runs/benchmarks/``, trained with the env's tuned config if absent; the seed with the highest evaluation
return), 64 of its greedy episodes collected (``purerl collect --greedy``), then 16 seeds of

- BC on N = 1, 4, 16, 64 of those episodes (each seed its own draw; 2000 Adam steps of 256 steps);
- DAgger with the same N expert-labelled episodes: 1 demonstration episode (round 0 is BC on it), then N - 1
  rounds of one learner episode each, every state labelled by the expert (500 Adam steps per round on all the
  data so far). At N = 1 DAgger is BC on one episode, so its N = 1 point is BC's.

The learners have the expert's network (hidden sizes, activation). Evaluation: 128 episodes per seed, sampled
actions (purerl's separate evaluation), IQM over seeds with a 95% stratified-bootstrap CI (rliable). The
distribution shift: per seed, the fraction of states at which the learner's mode equals the expert's (its label:
mode) on 16 fresh expert episodes (the expert's state distribution) and on 16 of the learner's own episodes
(continuous actions: the mean squared difference instead).

Each run is a directory under ``runs/imitation/`` (not committed), resumed after any stop and read back once
finished, so the same command continues the experiment. Results in ``experiments/imitation/results/``:
``bc_dagger.md`` (table), ``bc_dagger.json`` and ``bc_dagger.png``.
"""

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import purerl  # noqa: F401  (the CPU hazard's cure, before any compile)
from purerl.control.bc import BCConfig
from purerl.control.dagger import DAggerConfig
from purerl.control.envs import env_spec, vec_env
from purerl.control.evaluation import play_episodes
from purerl.core.stats import format_iqm_ci
from purerl.io.collect import collect
from purerl.io.run import ALGORITHMS
from purerl.io.run_dir import RunSettings, finished_run, load_trained_state, run_script
from purerl.io.tuned import tuned_config

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"
WORK = Path("runs/imitation")
ENVS = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "Breakout-MinAtar")
EXPERTS = {env: Path("runs/benchmarks/ppo-classic") / env for env in ENVS[:3]}
EXPERTS["Breakout-MinAtar"] = Path("runs/benchmarks/ppo-minatar/Breakout-MinAtar")
EPISODES = (1, 4, 16, 64)
DEMO_EPISODES, SHIFT_EPISODES = 64, 16


def expert_run(env: str) -> tuple[Path, int]:
    """The expert's run directory (trained here with the env's tuned PPO config if absent) and its best seed."""
    out = EXPERTS[env]
    if not (out / "summary.json").exists():
        print(f"no expert at {out}: training PPO on {env} with its tuned config", file=sys.stderr)
        finished_run(out, "ppo", tuned_config("ppo", env), RunSettings(num_seeds=4))
    per_seed = json.loads((out / "summary.json").read_text())["eval"]["return_per_seed"]
    return out, int(np.argmax(per_seed))


def demonstrations(out: Path, expert: Path, seed_index: int, episodes: int, key_seed: int) -> Path:
    if not (out / "demos.json").exists():
        collect(expert, out, episodes, seeds=[seed_index], greedy=True, seed=key_seed)
    return out


def agreement(run_dir: Path, expert: Path, seed_index: int, heldout: Path) -> dict[str, list[float]]:
    """Per seed of ``run_dir``: the learner's agreement with the expert's mode on the expert's states (the
    held-out demonstrations) and on ``SHIFT_EPISODES`` of its own episodes; for continuous actions the mean
    squared difference of the two modes instead."""
    algorithm, config, settings, states = load_trained_state(run_dir)
    expert_algorithm, expert_config, _, expert_states = load_trained_state(expert)
    expert_state = jax.tree.map(lambda x: x[seed_index], expert_states)
    spec = env_spec(config.env)
    learner_policy, expert_policy = ALGORITHMS[algorithm].policy, ALGORITHMS[expert_algorithm].policy
    heldout_obs = jnp.asarray(np.load(Path(heldout) / "demos.npz")["observations"])

    def measure(learner: jax.Array, expert_modes: jax.Array) -> jax.Array:
        if spec.discrete:
            return (learner == expert_modes).astype(jnp.float32)
        return ((learner - expert_modes) ** 2).sum(axis=-1)

    def one_seed(state: Any, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        on_expert = measure(learner_policy(state, heldout_obs).mode(), expert_policy(expert_state, heldout_obs).mode())
        env = vec_env(config.env, SHIFT_EPISODES)
        box = None if spec.discrete else (spec.action_low, spec.action_high)
        played = play_episodes(partial(learner_policy, state), env, key, spec.max_steps_in_episode, record=True,
                               action_box=box)  # fmt: skip
        obs = played["observations"].reshape(-1, spec.obs_dim)
        own = measure(learner_policy(state, obs).mode(), expert_policy(expert_state, obs).mode())
        active = played["active"].reshape(-1)
        return on_expert.mean(), (own * active).sum() / active.sum()

    keys = jax.random.split(jax.random.key(12345), settings.num_seeds)
    on_expert, on_own = jax.jit(jax.vmap(one_seed))(states, keys)
    return {"on_expert_states": np.asarray(on_expert).tolist(), "on_own_states": np.asarray(on_own).tolist()}


def cell(env: str, method: str, episodes: int, out: Path, shift: dict[str, list[float]]) -> dict[str, Any]:
    evaluation = json.loads((out / "summary.json").read_text())["eval"]  # rliable's IQM and its CI
    row = {
        "env": env,
        "method": method,
        "expert_episodes": episodes,
        "seeds": len(evaluation["return_per_seed"]),
        "eval_iqm": evaluation["iqm"],
        "eval_ci": [evaluation["iqm_ci_low"], evaluation["iqm_ci_high"]],
        "eval_per_seed": evaluation["return_per_seed"],
        "agreement": shift,
    }
    if method == "dagger":
        metrics = np.genfromtxt(out / "metrics.csv", delimiter=",", names=True)
        last = metrics["update"] == metrics["update"].max()
        row["expert_queries"] = float(np.mean(metrics["expert_queries"][last]))
    return row


def write_results(rows: list[dict[str, Any]], experts: dict[str, dict[str, Any]]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bc_dagger.json").write_text(json.dumps({"experts": experts, "rows": rows}, indent=1) + "\n")
    lines = [
        "# BC and DAgger against expert-labelled episodes",
        "",
        "Final evaluation return: IQM over seeds [95% stratified-bootstrap CI]. Agreement: the fraction of states at "
        "which the learner's mode equals the expert's, mean over seeds, on the expert's states and on the "
        "learner's own (Pendulum: the mean squared difference of the two actions, lower is closer). DAgger's "
        "queries: states the expert labelled (BC's: every step of its N episodes).",
        "",
        "| env | expert return | N | BC return IQM [CI] | DAgger return IQM [CI] | BC agreement: expert / own "
        "states | DAgger agreement: expert / own states | DAgger queries |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for env in experts:
        for n in EPISODES:
            by = {r["method"]: r for r in rows if r["env"] == env and r["expert_episodes"] == n}
            if "bc" not in by:
                continue
            bc, dagger = by["bc"], by.get("dagger", by["bc"] if n == 1 else None)

            def cells(r: dict[str, Any] | None) -> tuple[str, str]:
                if r is None:
                    return "-", "-"
                shift = r["agreement"]
                on_expert, on_own = np.mean(shift["on_expert_states"]), np.mean(shift["on_own_states"])
                return (
                    format_iqm_ci(r["eval_iqm"], *r["eval_ci"]),
                    f"{on_expert:.3f} / {on_own:.3f}",
                )

            (bc_return, bc_shift), (dagger_return, dagger_shift) = cells(bc), cells(dagger)
            queries = f"{dagger['expert_queries']:,.0f}" if dagger is not None and "expert_queries" in dagger else "-"
            lines.append(f"| {env} | {experts[env]['return']:.1f} | {n} | {bc_return} | {dagger_return} | {bc_shift} "
                         f"| {dagger_shift} | {queries} |")  # fmt: skip
    (RESULTS / "bc_dagger.md").write_text("\n".join(lines) + "\n")

    envs = [env for env in experts if any(r["env"] == env for r in rows)]
    fig, axes = plt.subplots(2, len(envs), figsize=(4.2 * len(envs), 7), dpi=100, squeeze=False)
    for column, env in enumerate(envs):
        top, bottom = axes[0, column], axes[1, column]
        for method, label in (("bc", "BC"), ("dagger", "DAgger")):
            chosen = sorted((r for r in rows if r["env"] == env and (r["method"] == method or
                             (method == "dagger" and r["method"] == "bc" and r["expert_episodes"] == 1))),
                            key=lambda r: r["expert_episodes"])  # fmt: skip
            if not chosen:
                continue
            n = [r["expert_episodes"] for r in chosen]
            (line,) = top.plot(n, [r["eval_iqm"] for r in chosen], marker="o", label=label)
            top.fill_between(n, [r["eval_ci"][0] for r in chosen], [r["eval_ci"][1] for r in chosen],
                             color=line.get_color(), alpha=0.2)  # fmt: skip
            for where, style in (("on_expert_states", "--"), ("on_own_states", "-")):
                bottom.plot(n, [np.mean(r["agreement"][where]) for r in chosen], style, marker="o",
                            color=line.get_color(), label=f"{label}, {where.replace('_', ' ')}")  # fmt: skip
        top.axhline(experts[env]["return"], color="grey", linestyle="--", label="expert")
        top.set(xscale="log", title=env, xlabel="expert-labelled episodes N", ylabel="eval return (IQM, 95% CI)")
        metric = "agreement with the expert" if env_spec(env).discrete else "squared action difference"
        bottom.set(xscale="log", xlabel="expert-labelled episodes N", ylabel=metric)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "bc_dagger.png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--work", type=Path, default=WORK, help=f"where the runs go [{WORK}]")
    args = parser.parse_args()
    rows, experts = [], {}
    for env in args.envs:
        expert, seed_index = expert_run(env)
        work = args.work / env
        demos = demonstrations(work / "demos", expert, seed_index, DEMO_EPISODES, key_seed=0)
        heldout = demonstrations(work / "heldout", expert, seed_index, SHIFT_EPISODES, key_seed=1)
        meta = json.loads((demos / "demos.json").read_text())
        experts[env] = {"run": str(expert), "seed_index": seed_index, "return": meta["mean_return"], "greedy": True}
        expert_config = load_trained_state(expert)[1]
        network = {"hidden_sizes": tuple(expert_config.hidden_sizes), "activation": expert_config.activation}
        for n in EPISODES:
            config = BCConfig(env=env, demos=str(demos.absolute()), num_demo_episodes=n, **network)
            out = finished_run(work / f"bc_{n}", "bc", config, RunSettings(num_seeds=args.seeds))
            rows.append(cell(env, "bc", n, out, agreement(out, expert, seed_index, heldout)))
            write_results(rows, experts)
        for n in EPISODES[1:]:
            config = DAggerConfig(env=env, demos=str(demos.absolute()), num_demo_episodes=1, num_updates=n,
                                  episodes_per_round=1, gradient_steps=500, **network)  # fmt: skip
            out = finished_run(work / f"dagger_{n}", "dagger", config, RunSettings(num_seeds=args.seeds))
            rows.append(cell(env, "dagger", n, out, agreement(out, expert, seed_index, heldout)))
            write_results(rows, experts)


if __name__ == "__main__":
    run_script(main)
