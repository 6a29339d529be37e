"""What training in checkpointable chunks costs: env steps/s of one jitted scan over all updates vs the
same updates scanned K at a time by ``purerl.io.chunked.train_in_chunks``.

    python benchmarks/chunking_overhead.py                       # CPU: 16 seeds, K = 10, 50, about 8 minutes
    python benchmarks/chunking_overhead.py --seeds 1024 --tag gpu

PureJaxRL's CartPole PPO configuration at 150k env steps per seed (292 updates). The variants run in one
process, interleaved (A B C A B C ...) so that the machine's drift hits them alike; the median of
``--reps`` timed runs after compilation is reported, compile time apart. Chunked runs here save no
checkpoints (``checkpoint_every`` is a separate, user-chosen cost); they do everything else a CLI run does
per chunk: collect metrics on the host and check losses and parameters for NaN/Inf.
Results go to benchmarks/results/chunking_overhead_<tag>.{json,md}.
"""

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import jax
from ppo_throughput import PUREJAXRL_CARTPOLE  # noqa: E402  (run from the repository root or benchmarks/)

import purerl  # noqa: F401  (safe XLA defaults before JAX starts)
from purerl.control.ppo import init, make_train, update
from purerl.core.sharding import seed_mesh
from purerl.io.chunked import train_in_chunks
from purerl.io.run import ALGORITHMS, environment_info


def single_jit(config, keys):
    compiled = jax.jit(jax.vmap(make_train(config))).lower(keys).compile()

    def run():
        start = time.perf_counter()
        jax.block_until_ready(compiled(keys))
        return time.perf_counter() - start

    return run


def chunked(config, keys, chunk_updates):
    mesh = seed_mesh()

    def run():
        output = train_in_chunks(init, update, config.num_updates, keys, config, mesh, chunk_updates=chunk_updates)
        return output.train_seconds

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--timesteps", type=int, default=150_000)
    parser.add_argument("--chunks", type=int, nargs="+", default=[10, ALGORITHMS["ppo"].chunk_updates])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()

    config = replace(PUREJAXRL_CARTPOLE, total_timesteps=args.timesteps)
    keys = jax.random.split(jax.random.key(0), args.seeds)
    variants = {"single jit": single_jit(config, keys)}
    variants |= {f"chunks of {k}": chunked(config, keys, k) for k in args.chunks}
    for run in variants.values():
        run()  # warm-up: compiles (chunked runs compile inside and report train time only)
    times = {name: [] for name in variants}
    for _ in range(args.reps):
        for name, run in variants.items():
            times[name].append(run())

    env_steps = config.num_updates * config.batch_size * args.seeds
    base = statistics.median(times["single jit"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "variant": name,
                "median_seconds": median,
                "all_seconds": values,
                "env_steps_per_second": env_steps / median,
                "overhead_vs_single_jit": median / base - 1,
            }
        )
    header = "| variant | median s | env steps/s | overhead vs single jit | runs (s) |\n" + "| --- " * 5 + "|"
    lines = [
        f"| {r['variant']} | {r['median_seconds']:.2f} | {r['env_steps_per_second']:,.0f} | "
        f"{r['overhead_vs_single_jit']:+.1%} | {', '.join(f'{t:.2f}' for t in r['all_seconds'])} |"
        for r in rows
    ]
    info = environment_info()
    title = (
        f"PPO CartPole, {args.seeds} seeds x {config.num_updates * config.batch_size:,} env steps, "
        f"{info['device']['kind']} ({info['device']['platform']}), jax {info['versions']['jax']}, {info['date']}"
    )
    table = "\n".join([title, "", header, *lines])
    print(table)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"chunking_overhead_{args.tag}.md").write_text(table + "\n")
    result = {"seeds": args.seeds, "env_steps_per_seed": config.num_updates * config.batch_size, "rows": rows}
    (out / f"chunking_overhead_{args.tag}.json").write_text(json.dumps(result | info, indent=2) + "\n")


if __name__ == "__main__":
    main()
