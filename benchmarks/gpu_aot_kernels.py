"""What XLA:GPU would run, without a GPU: purerl's programs compiled for a virtual H100 (deviceless AOT), their
kernel launches and bytes moved counted from the optimized HLO, beside PureJaxRL's own ``ppo.py``.

    pip install --no-deps jax-cuda12-pjrt==$JAXLIB jax-cuda12-plugin==$JAXLIB      # in a scratch venv
    XLA_FLAGS=--xla_gpu_enable_triton_gemm=false python benchmarks/gpu_aot_kernels.py \\
        --gpu-aot ../shared/tools/gpu-aot --pjrl .peers/purejaxrl                   # about 11 minutes

``--gpu-aot`` is the folder of the team's deviceless-compile tools (``gpu_aot.py``, ``hlo_cost.py``);
``--pjrl`` a folder holding PureJaxRL's ``ppo.py`` (``prepare_purejaxrl.sh`` there lays it out; it is read
and compiled beside ours, never committed). These are predictions of a model (every dot a cuBLAS call, no
autotuning, no CUDA graphs; bytes = operands + outputs per kernel), to be checked on a GPU
(``benchmarks/gpu_figures.sh``). Results: benchmarks/results/gpu_aot_h100.{json,md}.

- PPO: the whole run (``jit(vmap(make_train))``) at PureJaxRL's CartPole settings, kernel launches over the
  nested loops with their trip counts and bytes per env step, for ``scan_unroll`` 1 and the GPU default,
  in float32 and with ``compute_dtype="bfloat16"``, and PureJaxRL's ``ppo.py`` at the same settings
  (truncation as termination, as PureJaxRL does).
- LM: one SFT train step (the small and the tiny model, f32 and bf16, batch 512): kernels, bytes, scatters
  and the dtype of the output projection.
- physics: whole SAC and PPO runs at the shipped brax hopper and walker2d configs (full budgets, 8 seeds):
  kernel launches, and the time they alone take at 1.5 us each.
"""

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def loop_totals(hlo_text: str, computations, analyse) -> tuple[int, int]:
    """``(kernel launches, bytes)`` of a whole program: each while loop's body counted its trip count times, and
    of each conditional its costliest branch (SAC's gradient steps sit in the branch taken from
    ``learning_starts`` on)."""
    comps = computations(hlo_text)
    entry = next(name for name, (is_entry, _) in comps.items() if is_entry)
    skipped = ("while", "copy-start", "copy-done", "conditional", "call")

    def walk(name: str, times: int) -> tuple[int, int]:
        body = comps[name][1]
        kernels = [k for k in analyse(body) if k["kind"] not in skipped]
        launches, moved = times * len(kernels), times * sum(k["bytes"] for k in kernels)
        for line in body.split("\n"):
            more = (0, 0)
            if " while(" in line:
                sub = re.search(r"body=%?([\w.\-]+)", line).group(1)
                trip = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', line)
                more = walk(sub, times * (int(trip.group(1)) if trip else 1))
            elif " conditional(" in line:
                branches = re.search(r"branch_computations=\{([^}]*)\}", line)
                if branches:
                    names = re.findall(r"%?([\w.\-]+)", branches.group(1))
                else:
                    names = re.findall(r"(?:true|false)_computation=%?([\w.\-]+)", line)
                more = max(walk(branch, times) for branch in names)
            launches, moved = launches + more[0], moved + more[1]
        return launches, moved

    return walk(entry, 1)


def ppo_rows(gpu_aot, tools, seeds: int, pjrl: str | None) -> list[dict]:
    import jax
    from ppo_throughput import PUREJAXRL_CARTPOLE, purejaxrl_train

    from purerl.control.ppo import GPU_SCAN_UNROLL, make_train

    config = dataclasses.replace(PUREJAXRL_CARTPOLE, bootstrap_truncation=False)  # PureJaxRL's done handling
    env_steps = seeds * config.num_updates * config.batch_size
    keys = jax.random.split(jax.random.key(0), seeds)
    programs = {
        "purerl, scan_unroll=1": jax.jit(jax.vmap(make_train(dataclasses.replace(config, scan_unroll=1)))),
        f"purerl, scan_unroll={GPU_SCAN_UNROLL} (GPU default)": jax.jit(
            jax.vmap(make_train(dataclasses.replace(config, scan_unroll=GPU_SCAN_UNROLL)))
        ),
        f"purerl, scan_unroll={GPU_SCAN_UNROLL}, compute_dtype=bfloat16": jax.jit(
            jax.vmap(make_train(dataclasses.replace(config, scan_unroll=GPU_SCAN_UNROLL, compute_dtype="bfloat16")))
        ),
    }
    if pjrl:
        programs["PureJaxRL ppo.py"] = jax.jit(jax.vmap(purejaxrl_train(pjrl, config)[0]))
    rows = []
    for name, program in programs.items():
        start = time.perf_counter()
        _, compiled = gpu_aot.compile_gpu(program, keys)
        compile_seconds = time.perf_counter() - start
        launches, moved = loop_totals(compiled.as_text(), tools.computations, tools.analyse)
        rows.append({"part": "ppo", "program": name, "seeds": seeds, "env_steps": env_steps,
                     "kernel_launches": launches, "bytes": moved, "bytes_per_env_step": moved / env_steps,
                     "compile_seconds_cpu_host": compile_seconds})  # fmt: skip
        print(
            f"ppo {seeds} seeds, {name}: {launches / 1e6:.2f}M launches, {moved / env_steps / 1e3:.1f} KB per env "
            f"step, compiled in {compile_seconds:.0f} s",
            flush=True,
        )
    return rows


PHYSICS_PROGRAMS = (("sac", "brax/hopper"), ("sac", "brax/walker2d"), ("ppo", "brax/hopper"), ("ppo", "brax/walker2d"))
LAUNCH_SECONDS = 1.5e-6  # the launch floor the team's run_total.py assumes per kernel on an H100


def physics_rows(gpu_aot, tools, seeds: int) -> list[dict]:
    """Kernel launches of whole SAC and PPO runs at the shipped Brax configs (their full budgets), and the
    run time they alone would take at ``LAUNCH_SECONDS`` each: a floor for a launch-bound program. Bytes are
    left out: the tool counts a scatter's or gather's whole operand (the replay buffer, 369 MB at 8 seeds of
    hopper) where the kernel touches a few rows."""
    import jax

    from purerl.control import ppo, sac
    from purerl.io.tuned import tuned_config

    modules = {"sac": sac, "ppo": ppo}
    keys = jax.random.split(jax.random.key(0), seeds)
    rows = []
    for algorithm, env in PHYSICS_PROGRAMS:
        config = tuned_config(algorithm, env)
        start = time.perf_counter()
        _, compiled = gpu_aot.compile_gpu(jax.jit(jax.vmap(modules[algorithm].make_train(config))), keys)
        compile_seconds = time.perf_counter() - start
        launches, _ = loop_totals(compiled.as_text(), tools.computations, tools.analyse)
        rows.append({"part": "physics", "algorithm": algorithm, "env": env, "seeds": seeds,
                     "env_steps_per_seed": config.num_updates * config.steps_per_update,
                     "updates": config.num_updates,
                     "gradient_steps_per_update": getattr(config, "gradient_steps", None),
                     "kernel_launches": launches, "launch_floor_seconds": launches * LAUNCH_SECONDS,
                     "compile_seconds_cpu_host": compile_seconds})  # fmt: skip
        print(
            f"{algorithm} {env} {seeds} seeds: {launches / 1e6:.1f}M launches ({launches / config.num_updates:,.0f} "
            f"per update), launch floor {launches * LAUNCH_SECONDS / 60:.1f} min, compiled in {compile_seconds:.0f} s",
            flush=True,
        )
    return rows


def lm_rows(gpu_aot, tools, batch_size: int) -> list[dict]:
    from purerl.lm.sft import SFTConfig, make_sft

    rows = []
    for preset in ("tiny", "small"):
        for dtype in ("float32", "bfloat16"):
            method = make_sft(SFTConfig(task="sentiment", preset=preset, compute_dtype=dtype, batch_size=batch_size))
            batch = method.sample(method.state, 0)
            _, compiled = gpu_aot.compile_gpu(method.update, method.state, batch)
            text = compiled.as_text()
            kernels, moved = loop_totals(text, tools.computations, tools.analyse)
            logits = re.findall(r"(\w+)\[\d+,\d+,49\]\{[^}]*\} (?:custom-call|dot|fusion)", text)
            rows.append({"part": "lm_sft_step", "preset": preset, "compute_dtype": dtype, "batch": batch_size,
                         "kernels": kernels, "bytes": moved,
                         "scatters": len(re.findall(r" scatter\(", text)),
                         "logits_dtypes": sorted(set(logits))})  # fmt: skip
            row = rows[-1]
            print(
                f"lm sft step {preset} {dtype}: {row['kernels']} kernels, {row['bytes'] / 1e9:.1f} GB, "
                f"{row['scatters']} scatters, [.., 49] outputs in {row['logits_dtypes']}",
                flush=True,
            )
    return rows


def sample_rows(gpu_aot, tools, batches: list[int]) -> list[dict]:
    """Kernels and bytes per decoded token of the KV-cached sampler (small model), from the decode loop."""
    import jax
    import numpy as np

    from purerl.lm.sampling import SamplingConfig, make_generate
    from purerl.lm.sft import SFTConfig, make_sft
    from purerl.lm.tokenizer import CharTokenizer, completion_block_length, encode_prompts

    rows = []
    for dtype in ("float32", "bfloat16"):
        config = SFTConfig(task="sentiment", preset="small", compute_dtype=dtype)
        method, task = make_sft(config), config.task_instance
        new_tokens = completion_block_length(task.max_completion_chars)
        generate = make_generate(method.model, SamplingConfig(new_tokens))
        for batch in batches:
            prompts = task.prompts(np.random.default_rng(0), batch)
            prompt, mask = encode_prompts(CharTokenizer(), prompts, task.max_prompt_chars)
            _, compiled = gpu_aot.compile_gpu(generate, method.state.params, prompt, mask, jax.random.key(0))
            text = compiled.as_text()
            total = loop_totals(text, tools.computations, tools.analyse)
            outside = loop_totals(text.replace(" while(", " not_a_loop("), tools.computations, tools.analyse)
            rows.append({"part": "sample", "compute_dtype": dtype, "batch": batch, "new_tokens": new_tokens,
                         "kernels_per_token": (total[0] - outside[0]) / new_tokens,
                         "bytes_per_token": (total[1] - outside[1]) / new_tokens})  # fmt: skip
            row = rows[-1]
            print(f"sample small {dtype} batch {batch}: {row['kernels_per_token']:.0f} kernels and "
                  f"{row['bytes_per_token'] / 1e6:.0f} MB per decode step", flush=True)  # fmt: skip
    return rows


ROW_PART = {"ppo": "ppo", "lm_sft_step": "lm", "sample": "sample", "physics": "physics"}  # row part -> --parts


def dates(rows: list[dict]) -> str:
    return ", ".join(sorted({row.get("date", "before rows were dated") for row in rows}))


def report(rows: list[dict], info: dict) -> str:
    """The markdown tables of ``rows``."""
    lines = [f"Deviceless compile for a virtual H100 (predictions), jax {info['versions']['jax']}", ""]
    ppo = [r for r in rows if r["part"] == "ppo"]
    if ppo:
        lines += ["PPO CartPole, PureJaxRL's settings (976 updates of 4 envs x 128 steps per seed), whole run "
                  f"(compiled {dates(ppo)}):", "",
                  "| seeds | program | kernel launches | KB per env step |", "| --- " * 4 + "|"]  # fmt: skip
        lines += [f"| {r['seeds']} | {r['program']} | {r['kernel_launches'] / 1e6:.2f}M | "
                  f"{r['bytes_per_env_step'] / 1e3:.1f} |" for r in ppo]  # fmt: skip
        lines.append("")
    lm = [r for r in rows if r["part"] == "lm_sft_step"]
    if lm:
        lines += [f"LM SFT step, batch {lm[0]['batch']} (compiled {dates(lm)}):", "",
                  "| model | dtype | kernels | GB moved | scatters | [.., V] outputs |",
                  "| --- " * 6 + "|"]  # fmt: skip
        lines += [f"| {r['preset']} | {r['compute_dtype']} | {r['kernels']} | {r['bytes'] / 1e9:.1f} | "
                  f"{r['scatters']} | {', '.join(r['logits_dtypes'])} |" for r in lm]  # fmt: skip
    sample = [r for r in rows if r["part"] == "sample"]
    if sample:
        lines += ["", "KV-cached sampling, small model, per decoded token, the decode loop's body "
                  f"(compiled {dates(sample)}):", "",
                  "| dtype | batch | kernels | MB moved |", "| --- " * 4 + "|"]  # fmt: skip
        lines += [f"| {r['compute_dtype']} | {r['batch']} | {r['kernels_per_token']:.0f} | "
                  f"{r['bytes_per_token'] / 1e6:.0f} |" for r in sample]  # fmt: skip
    physics = [r for r in rows if r["part"] == "physics"]
    if physics:
        lines += ["", f"Whole runs at the shipped Brax configs' full budgets, {physics[0]['seeds']} seeds "
                  f"(compiled {dates(physics)}); the floor is the launches alone at {LAUNCH_SECONDS * 1e6:g} us each:",
                  "",
                  "| algorithm | env | env steps per seed | updates | kernel launches | per update | launch floor |",
                  "| --- " * 7 + "|"]  # fmt: skip
        lines += [f"| {r['algorithm']} | {r['env']} | {r['env_steps_per_seed']:,} | {r['updates']:,} | "
                  f"{r['kernel_launches'] / 1e6:.1f}M | {r['kernel_launches'] / r['updates']:,.0f} | "
                  f"{r['launch_floor_seconds'] / 60:.1f} min |" for r in physics]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu-aot", required=True, help="folder of gpu_aot.py and hlo_cost.py")
    parser.add_argument("--pjrl", help="folder holding PureJaxRL's ppo.py (prepare_purejaxrl.sh)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[64, 1024, 4096])
    parser.add_argument("--lm-batch", type=int, default=512)
    parser.add_argument("--sample-batches", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--physics-seeds", type=int, default=8)
    parts = ["ppo", "lm", "sample", "physics"]
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.gpu_aot).resolve()))
    import gpu_aot  # sets JAX_PLATFORMS=cpu and builds the virtual H100 before purerl imports jax
    import hlo_cost

    import purerl  # noqa: F401
    from purerl.io.run import environment_info

    rows = []
    if "ppo" in args.parts:
        for seeds in args.seeds:
            rows += ppo_rows(gpu_aot, hlo_cost, seeds, args.pjrl)
    if "lm" in args.parts:
        rows += lm_rows(gpu_aot, hlo_cost, args.lm_batch)
    if "sample" in args.parts:
        rows += sample_rows(gpu_aot, hlo_cost, args.sample_batches)
    if "physics" in args.parts:
        rows += physics_rows(gpu_aot, hlo_cost, args.physics_seeds)
    info = environment_info()
    rows = [row | {"date": info["date"]} for row in rows]
    out = ROOT / "benchmarks" / "results"
    previous = out / "gpu_aot_h100.json"
    if previous.exists():  # parts not rerun keep their rows (and dates)
        kept = [row for row in json.loads(previous.read_text())["rows"] if ROW_PART[row["part"]] not in args.parts]
        rows = kept + rows
    table = report(rows, info)
    print(table)
    (out / "gpu_aot_h100.md").write_text(table + "\n")
    previous.write_text(json.dumps({"rows": rows} | info, indent=2) + "\n")


if __name__ == "__main__":
    main()
