"""Time to result with the persistent compilation cache: each command run twice, on a fresh cache, then how the
compile time of PPO's training chunk grows with the seed count and the config's size (cache off).

    python benchmarks/compile_cache.py                 # CPU: about 6 minutes
    python benchmarks/compile_cache.py --tag gpu

Part 1 runs each ``purerl`` command in a fresh process twice with ``--compile-cache`` on one new directory.
``XLA compile s`` adds up JAX's own events over the whole process: XLA's compile of every program, or its
load from the cache on a hit; ``tracing s`` is JAX's tracing and lowering (never cached), on the second run;
``command's compile s`` is what the command reports (control: the training chunks, tracing included; LM: its
first step, execution included); ``wall s`` the whole process (imports, compiles, training, evaluation,
outputs). Part 2 compiles PPO's chunk program (10 updates, ``purerl.io.chunked.chunk_program``) in-process
with the cache off. Results go to benchmarks/results/compile_cache_<tag>.{json,md}.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from ppo_throughput import PUREJAXRL_CARTPOLE  # noqa: E402  (run from the repository root or benchmarks/)

import purerl  # noqa: F401  (safe XLA defaults before JAX starts)
from purerl.control import ppo
from purerl.core.sharding import seed_mesh
from purerl.io.chunked import chunk_program, init_runs
from purerl.io.run import environment_info

ROOT = Path(__file__).resolve().parent.parent
SMALL_BUDGET = ["--total-timesteps", "51200"]
COMMANDS = {
    "PPO CartPole (quick start)": ["train", "ppo", "--env", "CartPole-v1", "--seeds", "16"],
    "GRPO CartPole": ["train", "grpo", "--env", "CartPole-v1", "--seeds", "16"] + ["--num-updates", "20"],
    "PPO sweep, 3 points x 8 seeds": ["sweep", "ppo", "--env", "CartPole-v1", "--seeds", "8", *SMALL_BUDGET]
    + ["--grid", "learning_rate=1e-4,3e-4,1e-3"],
    "LM SFT": ["lm", "sft", "--task", "sentiment", "--steps", "60", "--eval-every", "60", "--warmup-steps", "10"],
    "LM GRPO": ["lm", "grpo", "--init", "{sft}", "--steps", "4", "--eval-every", "4"],
}


# The purerl command in a process that also adds up JAX's own compile events over the whole run: XLA's compile
# (or, on a cache hit, the load of the stored program; both are BACKEND_COMPILE_EVENT) and tracing + lowering.
MEASURED_COMMAND = """
import atexit, collections, json, os, sys
import jax
seconds = collections.Counter()
jax.monitoring.register_event_duration_secs_listener(lambda event, duration, **_: seconds.update({event: duration}))
atexit.register(lambda: open(os.environ["EVENTS_FILE"], "w").write(json.dumps(seconds)))
from purerl.io.launch import main
sys.exit(main(sys.argv[1:]))
"""
XLA_COMPILE = "/jax/core/compile/backend_compile_duration"
TRACING = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration")


def run_command(name: str, args: list[str], out: Path, cache: Path, sft: Path) -> dict:
    args = [arg.replace("{sft}", str(sft)) for arg in args]
    command = [sys.executable, "-c", MEASURED_COMMAND, *args, "--out", str(out), "--compile-cache", str(cache)]
    events = out.parent / f"{out.name}-events.json"
    env = os.environ | {"MPLBACKEND": "Agg", "EVENTS_FILE": str(events)}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stderr[-3000:]}")
    summary_file = out / ("sweep.json" if args[0] == "sweep" else "summary.json")
    seconds = json.loads(events.read_text())
    return {
        "compile_seconds": json.loads(summary_file.read_text())["compile_seconds"],
        "xla_compile_seconds": seconds.get(XLA_COMPILE, 0.0),
        "tracing_seconds": sum(seconds.get(event, 0.0) for event in TRACING),
        "wall_seconds": wall,
    }


def first_and_second_runs(scratch: Path, names: list[str]) -> list[dict]:
    rows, cache = [], scratch / "cache"
    for name, args in COMMANDS.items():
        if not any(name.startswith(prefix) for prefix in names):
            continue
        first = run_command(name, args, scratch / f"{len(rows)}-first", cache, scratch / "0-sft")
        second = run_command(name, args, scratch / f"{len(rows)}-second", cache, scratch / "0-sft")
        if args[:2] == ["lm", "sft"]:
            (scratch / "0-sft").symlink_to(scratch / f"{len(rows)}-first")
        rows.append({"command": name, "argv": " ".join(args), "first": first, "second": second})
        ratio = first["xla_compile_seconds"] / max(second["xla_compile_seconds"], 1e-9)
        print(
            f"{name}: XLA compile {first['xla_compile_seconds']:.2f} -> {second['xla_compile_seconds']:.2f} s "
            f"({ratio:.0f}x), wall {first['wall_seconds']:.1f} -> {second['wall_seconds']:.1f} s",
            flush=True,
        )
    return rows


def chunk_compile_seconds(config: ppo.PPOConfig, seeds: int) -> float:
    mesh = seed_mesh()
    state = init_runs(ppo.init, jax.random.split(jax.random.key(0), seeds), config, mesh)
    start = time.perf_counter()
    chunk_program(ppo.update, mesh).lower(state, np.arange(10)).compile()
    return time.perf_counter() - start


def growth() -> list[dict]:
    jax.config.update("jax_enable_compilation_cache", False)
    base = PUREJAXRL_CARTPOLE
    variants = [("seeds", seeds, base, seeds) for seeds in (1, 16, 256, 4096)]
    variants += [("num_steps", n, dataclasses.replace(base, num_steps=n), 16) for n in (32, 128, 512)]
    variants += [("num_envs", n, dataclasses.replace(base, num_envs=n), 16) for n in (1, 4, 64)]
    variants += [("hidden", h, dataclasses.replace(base, hidden_sizes=(h, h)), 16) for h in (16, 64, 256)]
    variants += [
        ("epochs x minibatches", f"{e}x{m}", dataclasses.replace(base, update_epochs=e, num_minibatches=m), 16)
        for e, m in ((1, 1), (4, 4), (16, 16))
    ]
    rows = []
    for what, value, config, seeds in variants:
        config = dataclasses.replace(config, total_timesteps=10 * config.num_envs * config.num_steps)
        seconds = chunk_compile_seconds(config, seeds)
        rows.append({"varied": what, "value": value, "seeds": seeds, "compile_seconds": seconds})
        print(f"chunk compile, {what} = {value}: {seconds:.2f} s", flush=True)
    return rows


def report(result: dict, info: dict) -> str:
    """The markdown tables of ``result``."""
    lines = [
        f"Compile cache, {info['device']['kind']} ({info['device']['platform']}), jax "
        f"{info['versions']['jax']}, {info['date']}",
        "",
    ]
    if result["runs"]:
        lines += [
            "| command | XLA compile s, first run | second run | ratio | tracing s | command's compile s, first | "
            "second | wall s, first | second |",
            "| --- " * 9 + "|",
        ]
        for row in result["runs"]:
            first, second = row["first"], row["second"]
            ratio = first["xla_compile_seconds"] / max(second["xla_compile_seconds"], 1e-9)
            lines.append(
                f"| {row['command']} | {first['xla_compile_seconds']:.2f} | {second['xla_compile_seconds']:.2f} | "
                f"{ratio:.0f}x | {second['tracing_seconds']:.2f} | {first['compile_seconds']:.2f} | "
                f"{second['compile_seconds']:.2f} | {first['wall_seconds']:.1f} | {second['wall_seconds']:.1f} |"
            )
        lines += [
            "",
            "Commands (each with `--out DIR --compile-cache CACHE`): "
            + "; ".join(f"`purerl {row['argv']}`" for row in result["runs"]),
            "",
        ]
    if result["growth"]:
        lines += [
            "PPO chunk program (10 updates), compile seconds, cache off; PureJaxRL CartPole config otherwise",
            "",
            "| varied | value | seeds | compile s |",
            "| --- " * 4 + "|",
        ]
        lines += [
            f"| {r['varied']} | {r['value']} | {r['seeds']} | {r['compile_seconds']:.2f} |" for r in result["growth"]
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", default="cpu")
    parser.add_argument("--parts", nargs="+", default=["runs", "growth"], choices=["runs", "growth"])
    parser.add_argument("--commands", nargs="+", default=["PPO", "GRPO", "LM"], help="commands whose names start so")
    args = parser.parse_args()
    info = environment_info()
    result = {"runs": [], "growth": []}
    with tempfile.TemporaryDirectory(prefix="purerl-compile-cache-") as scratch:
        if "runs" in args.parts:
            result["runs"] = first_and_second_runs(Path(scratch), args.commands)
    if "growth" in args.parts:
        result["growth"] = growth()

    table = report(result, info)
    print(table)
    out = ROOT / "benchmarks" / "results"
    (out / f"compile_cache_{args.tag}.md").write_text(table + "\n")
    (out / f"compile_cache_{args.tag}.json").write_text(json.dumps(result | info, indent=2) + "\n")


if __name__ == "__main__":
    main()
