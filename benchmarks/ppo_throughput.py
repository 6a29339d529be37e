"""PPO training throughput: env steps per second for 1, 16, 64 vmapped seeds.

    python benchmarks/ppo_throughput.py                      # CPU: 1, 16, 64 seeds, about 12 minutes on 2 cores
    python benchmarks/ppo_throughput.py --seeds 64 256 1024 4096 8192 --truncation as-done --tag gpu \
        --scan-unroll 1 8 --purejaxrl .peers/purejaxrl      # PureJaxRL's own ppo.py in the same run
    python benchmarks/ppo_throughput.py --scan-unroll 8 --compute-dtype float32 bfloat16   # mixed precision too

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
import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np

import purerl  # noqa: F401  (safe XLA defaults before JAX starts)
from purerl.control.ppo import PPOConfig, make_train
from purerl.io.run import environment_info, train_curve_per_seed

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


@contextlib.contextmanager
def purejaxrl_gymnax(folder: str):
    """While PureJaxRL makes its env: ``gymnax.make`` returns envs whose step gives the 5-tuple PureJaxRL
    unpacks (``gymnax_compat``, done = terminated | truncated); purerl's envs, made outside, are gymnax's."""
    sys.path.insert(0, str(Path(folder).resolve()))
    import gymnax
    import gymnax_compat

    original = gymnax.make
    gymnax_compat.patch_gymnax_make()
    try:
        yield
    finally:
        gymnax.make = original


def purejaxrl_train(folder: str, config: PPOConfig):
    """PureJaxRL's own ``make_train`` (its ``purejaxrl/ppo.py``, unmodified, laid out in ``folder`` by the team's
    ``prepare_purejaxrl.sh``; read and run beside ours, never committed) at ``config``'s settings, and a
    function of its output that gives ``{"episode_return": [seeds, updates]}``."""
    sys.path.insert(0, str(Path(folder).resolve()))
    import ppo as purejaxrl

    settings = {
        "LR": config.learning_rate, "NUM_ENVS": config.num_envs, "NUM_STEPS": config.num_steps,
        "TOTAL_TIMESTEPS": config.num_updates * config.batch_size, "UPDATE_EPOCHS": config.update_epochs,
        "NUM_MINIBATCHES": config.num_minibatches, "GAMMA": config.gamma, "GAE_LAMBDA": config.gae_lambda,
        "CLIP_EPS": config.clip_eps, "ENT_COEF": config.ent_coef, "VF_COEF": config.vf_coef,
        "MAX_GRAD_NORM": config.max_grad_norm, "ACTIVATION": config.activation, "ENV_NAME": config.env,
        "ANNEAL_LR": config.anneal_lr, "DEBUG": False,
    }  # fmt: skip

    def returns(output) -> dict[str, np.ndarray]:
        info = output["metrics"]  # per step and env: [seeds, updates, steps, envs]
        done = np.asarray(info["returned_episode"], np.float64)
        total = (np.asarray(info["returned_episode_returns"]) * done).sum(axis=(2, 3))
        with np.errstate(invalid="ignore"):
            return {"episode_return": total / done.sum(axis=(2, 3))}

    with purejaxrl_gymnax(folder):
        train = purejaxrl.make_train(settings)
    return train, returns


def measure(config: PPOConfig, num_seeds: int, reps: int, program: str, purejaxrl: str | None = None) -> dict:
    keys = jax.random.split(jax.random.key(0), num_seeds)
    if purejaxrl is None:
        train, to_metrics = make_train(config), lambda output: {k: np.asarray(v) for k, v in output[1].items()}
    else:
        train, to_metrics = purejaxrl_train(purejaxrl, config)
    train = jax.jit(jax.vmap(train))
    start = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    device_bytes = memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        output = jax.block_until_ready(compiled(keys))
        times.append(time.perf_counter() - start)
    metrics = to_metrics(output)
    env_steps = config.num_updates * config.batch_size * num_seeds
    best = min(times)
    return {
        "seeds": num_seeds,
        "program": program,
        "bootstrap_truncation": config.bootstrap_truncation,
        "scan_unroll": config.unroll,
        "compute_dtype": config.compute_dtype,
        "env_steps_total": env_steps,
        "compile_seconds": compile_seconds,
        "device_bytes": device_bytes,
        "run_seconds": times,
        "env_steps_per_second": env_steps / best,
        "train_return_mean": float(np.nanmean(train_curve_per_seed(metrics))),
    }


TRUNCATION = {"as-done": (False,), "bootstrap": (True,), "both": (False, True)}


def write_results(rows: list[dict], tag: str) -> None:
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    record = {
        "benchmark": "ppo_throughput",
        "config": "PureJaxRL ppo.py CartPole defaults (env steps per seed: env_steps_total / seeds)",
        "rows": rows,
    } | environment_info()
    (out / f"ppo_throughput_{tag}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"# PPO throughput, CartPole-v1, PureJaxRL config ({record['device']['kind']}, {record['date']})",
        "",
        f"jax {record['versions']['jax']}, gymnax {record['versions']['gymnax']}, "
        f"{record['machine']['cpu_count']} CPU cores",
        "",
        "| seeds | program | truncation | compile s | run s (best) | env steps/s | device MiB | train return |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['seeds']} | {row['program']} | failed: {row['error']} | | | | | |")
            continue
        truncation = "bootstrap (purerl default)" if row["bootstrap_truncation"] else "as termination (PureJaxRL)"
        lines.append(
            f"| {row['seeds']} | {row['program']} | {truncation} "
            f"| {row['compile_seconds']:.1f} | {min(row['run_seconds']):.1f} | {row['env_steps_per_second']:,.0f} "
            f"| {row['device_bytes'] / 2**20:.1f} | {row['train_return_mean']:.1f} |"
        )
    (out / f"ppo_throughput_{tag}.md").write_text("\n".join(lines) + "\n")


def variants(args: argparse.Namespace) -> list[tuple[str, PPOConfig, str | None]]:
    """``(program, config, purejaxrl folder or None)`` measured at each seed count, side by side."""
    out, base = [], replace(PUREJAXRL_CARTPOLE, total_timesteps=args.timesteps)
    for bootstrap in TRUNCATION[args.truncation]:
        for unroll in args.scan_unroll or [None]:
            for dtype in args.compute_dtype:
                config = replace(base, bootstrap_truncation=bootstrap, scan_unroll=unroll, compute_dtype=dtype)
                name = f"purerl, scan_unroll={config.unroll}" + ("" if dtype == "float32" else f", {dtype}")
                out.append((name, config, None))
    if args.purejaxrl:
        out.append(("PureJaxRL ppo.py", replace(base, bootstrap_truncation=False), args.purejaxrl))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--timesteps", type=int, default=PUREJAXRL_CARTPOLE.total_timesteps, help="per seed")
    parser.add_argument("--truncation", choices=sorted(TRUNCATION), default="both")
    parser.add_argument("--scan-unroll", type=int, nargs="+", help="purerl variants by scan_unroll [backend default]")
    parser.add_argument(
        "--compute-dtype", nargs="+", default=["float32"], choices=["float32", "bfloat16"], help="purerl variants"
    )
    parser.add_argument("--purejaxrl", metavar="DIR", help="also run PureJaxRL's ppo.py from DIR, same settings")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()

    rows = []
    header = (
        f"{'seeds':>6} {'program':>36} {'truncation':>12} {'compile s':>10} {'run s':>8} {'env steps/s':>13} "
        f"{'device MiB':>11} {'train return':>13}"
    )
    print(header)
    for num_seeds in args.seeds:
        reps = args.reps if num_seeds < 64 else 1
        for program, config, purejaxrl in variants(args):
            try:
                row = measure(config, num_seeds, reps, program, purejaxrl)
            except Exception as error:  # e.g. PureJaxRL's per-step outputs exhausting device memory
                row = {"seeds": num_seeds, "program": program, "error": f"{type(error).__name__}: {error}"[:300]}
                print(f"{num_seeds:>6} {program:>36} failed: {row['error']}", flush=True)
                rows.append(row)
                continue
            rows.append(row)
            write_results(rows, args.tag)
            truncation = "bootstrap" if config.bootstrap_truncation else "as done"
            print(
                f"{num_seeds:>6} {program:>36} {truncation:>12} {row['compile_seconds']:>10.1f} "
                f"{min(row['run_seconds']):>8.1f} {row['env_steps_per_second']:>13,.0f} "
                f"{row['device_bytes'] / 2**20:>11.1f} {row['train_return_mean']:>13.1f}",
                flush=True,
            )
    write_results(rows, args.tag)


if __name__ == "__main__":
    main()
