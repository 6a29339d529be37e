"""PPO training throughput: env steps per second for 1, 16, 64 vmapped seeds.

    python benchmarks/ppo_throughput.py                      # CPU: 1, 16, 64 seeds, about 12 minutes on 2 cores
    python benchmarks/ppo_throughput.py --seeds 64 256 1024 4096 8192 --truncation as-done --tag gpu

Configuration: PureJaxRL's ppo.py CartPole defaults (4 envs x 128 steps, 4 epochs x 4 minibatches,
lr 2.5e-4 annealed, 499,712 steps per seed), so numbers line up with the peer table in
shared/reference/peer-baselines-cpu.md. Two variants run side by side in this process: truncation handled
as PureJaxRL does (``bootstrap_truncation=False``, the like-for-like comparison) and purerl's default
(``True``, one extra critic pass over the final observations). Compile time is measured apart from the run
(``jit(...).lower(keys).compile()``); a run is timed around ``block_until_ready``; the best of ``--reps`` runs
after compilation is reported (one run from 64 seeds up). ``device MiB`` is XLA's compiled buffer size
(arguments + outputs + temporaries), which says how many more seeds would fit. Results go to
benchmarks/results/ppo_throughput_<tag>.{json,md}, rewritten after every row so a run stopped part-way keeps
what it measured.
"""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np

import purerl  # noqa: F401  (safe XLA defaults before JAX starts)
from purerl.control.ppo import PPOConfig, make_train
from purerl.io.run import environment_info, train_return_per_seed

PUREJAXRL_CARTPOLE = PPOConfig(
    env="CartPole-v1",
    total_timesteps=500_000,
    num_envs=4,
    num_steps=128,
    update_epochs=4,
    num_minibatches=4,
    learning_rate=2.5e-4,
    anneal_lr=True,
    gamma=0.99,
    gae_lambda=0.95,
    clip_eps=0.2,
    ent_coef=0.01,
    vf_coef=0.5,
    max_grad_norm=0.5,
    hidden_sizes=(64, 64),
    activation="tanh",
)


def measure(config: PPOConfig, num_seeds: int, reps: int) -> dict:
    keys = jax.random.split(jax.random.key(0), num_seeds)
    train = jax.jit(jax.vmap(make_train(config)))
    start = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    device_bytes = memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        _, metrics = jax.block_until_ready(compiled(keys))
        times.append(time.perf_counter() - start)
    env_steps = config.num_updates * config.batch_size * num_seeds
    best = min(times)
    return {
        "seeds": num_seeds,
        "bootstrap_truncation": config.bootstrap_truncation,
        "env_steps_total": env_steps,
        "compile_seconds": compile_seconds,
        "device_bytes": device_bytes,
        "run_seconds": times,
        "env_steps_per_second": env_steps / best,
        "train_return_mean": float(np.mean(train_return_per_seed({k: np.asarray(v) for k, v in metrics.items()}))),
    }


TRUNCATION = {"as-done": (False,), "bootstrap": (True,), "both": (False, True)}


def write_results(rows: list[dict], tag: str) -> None:
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    record = {
        "benchmark": "ppo_throughput",
        "config": "PureJaxRL ppo.py CartPole defaults",
        "rows": rows,
    } | environment_info()
    (out / f"ppo_throughput_{tag}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"# PPO throughput, CartPole-v1, PureJaxRL config ({record['device']['kind']}, {record['date']})",
        "",
        f"jax {record['versions']['jax']}, gymnax {record['versions']['gymnax']}, "
        f"{record['machine']['cpu_count']} CPU cores",
        "",
        "| seeds | truncation | compile s | run s (best) | env steps/s | device MiB | train return |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        truncation = "bootstrap (purerl default)" if row["bootstrap_truncation"] else "as termination (PureJaxRL)"
        lines.append(
            f"| {row['seeds']} | {truncation} "
            f"| {row['compile_seconds']:.1f} | {min(row['run_seconds']):.1f} | {row['env_steps_per_second']:,.0f} "
            f"| {row['device_bytes'] / 2**20:.1f} | {row['train_return_mean']:.1f} |"
        )
    (out / f"ppo_throughput_{tag}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--truncation", choices=sorted(TRUNCATION), default="both")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()

    rows = []
    header = (
        f"{'seeds':>6} {'truncation':>12} {'compile s':>10} {'run s':>8} {'env steps/s':>13} {'device MiB':>11} "
        f"{'train return':>13}"
    )
    print(header)
    for num_seeds in args.seeds:
        reps = args.reps if num_seeds < 64 else 1
        for bootstrap in TRUNCATION[args.truncation]:
            row = measure(replace(PUREJAXRL_CARTPOLE, bootstrap_truncation=bootstrap), num_seeds, reps)
            rows.append(row)
            write_results(rows, args.tag)
            truncation = "bootstrap" if bootstrap else "as done"
            print(
                f"{num_seeds:>6} {truncation:>12} {row['compile_seconds']:>10.1f} {min(row['run_seconds']):>8.1f} "
                f"{row['env_steps_per_second']:>13,.0f} {row['device_bytes'] / 2**20:>11.1f} "
                f"{row['train_return_mean']:>13.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
