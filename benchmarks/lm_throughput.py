"""Toy-text LM throughput: SFT training tokens/s with model FLOPs utilisation, and sampling tokens/s with and
without the KV cache.

    python benchmarks/lm_throughput.py                                       # CPU: tiny and small, ~6 minutes
    python benchmarks/lm_throughput.py --dtypes float32 bfloat16 --batch-size 512 --tag gpu

Model shapes are ``purerl.lm.sft.PRESETS`` on the sentiment task (prompt block 34 + completion block 45 =
79 tokens). Training: the jitted SFT step (forward, backward, AdamW) on ``--batch-size`` sequences; tokens/s
counts every position of the padded sequences, and MFU = ``6 N`` FLOPs per token (N = non-embedding
parameters; Kaplan et al. 2020, as nanoGPT) / the device's peak. The peak is known for H100/H200 (dense
bf16 989 TFLOP/s, TF32 495 for float32 matmuls, NVIDIA datasheet); elsewhere pass ``--peak-tflops`` or
MFU is left out. Sampling: 45 new tokens for each of ``--sample-batch`` prompts, temperature 1, one jitted
call; tokens/s counts generated positions. With several batch sizes the KV-cached sampler runs at each (where a
device stops gaining from a larger batch is the batch to sample with on it) and the uncached one at the first.
Each number is the median of ``--reps`` timed calls after compiling.
Results go to benchmarks/results/lm_throughput_<tag>.{json,md}.
"""

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np

import purerl  # noqa: F401  (safe XLA defaults before JAX starts)
from purerl.io.run import environment_info
from purerl.lm.model import count_params
from purerl.lm.sampling import SamplingConfig, make_generate
from purerl.lm.sft import SFTConfig, make_sft
from purerl.lm.tokenizer import CharTokenizer, completion_block_length, encode_prompts

PEAK_TFLOPS = {"H100": {"bfloat16": 989.0, "float32": 495.0}, "H200": {"bfloat16": 989.0, "float32": 495.0}}


def median_seconds(fn, reps: int) -> float:
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_tflops(device_kind: str, dtype: str, given: float | None) -> float | None:
    if given is not None:
        return given
    return next((peaks[dtype] for name, peaks in PEAK_TFLOPS.items() if name in device_kind), None)


def measure(config: SFTConfig, sample_batches: list[int], reps: int, peak: float | None) -> dict:
    sft = make_sft(config)
    model, state, step = sft.model, sft.state, sft.update
    task, tokenizer = config.task_instance, CharTokenizer()
    batch = jax.device_put(sft.sample(state, 0))
    total, non_embedding = count_params(state.params)
    tokens_per_step = config.batch_size * model.config.max_len
    step_seconds = median_seconds(lambda: step(state, batch)[1]["loss"], reps)
    train_tps = tokens_per_step / step_seconds

    new_tokens = completion_block_length(task.max_completion_chars)

    def tokens_per_second(batch_size: int, use_cache: bool) -> float:
        prompts = task.prompts(np.random.default_rng(0), batch_size)
        prompt, prompt_mask = encode_prompts(tokenizer, prompts, task.max_prompt_chars)
        generate = make_generate(model, SamplingConfig(new_tokens, use_cache=use_cache))
        seconds = median_seconds(lambda: generate(state.params, prompt, prompt_mask, jax.random.key(1)).tokens, reps)
        return batch_size * new_tokens / seconds

    cached = {batch_size: tokens_per_second(batch_size, True) for batch_size in sample_batches}
    uncached = tokens_per_second(sample_batches[0], False)
    row = {
        "preset": config.preset,
        "dtype": config.compute_dtype,
        "parameters": total,
        "non_embedding_parameters": non_embedding,
        "batch_size": config.batch_size,
        "sequence_length": model.config.max_len,
        "train_step_seconds": step_seconds,
        "train_tokens_per_second": train_tps,
        "mfu": None if peak is None else 6 * non_embedding * train_tps / (peak * 1e12),
        "sample_batch": sample_batches[0],
        "sample_tokens_per_second_cached": cached[sample_batches[0]],
        "sample_tokens_per_second_uncached": uncached,
        "cache_speedup": cached[sample_batches[0]] / uncached,
        "sample_tokens_per_second_cached_by_batch": cached,
    }
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--dtypes", nargs="+", default=["float32"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--sample-batch", type=int, nargs="+", default=[64])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, help="the device's peak, for MFU where it is not known")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()

    info = environment_info()
    rows = []
    for preset in args.presets:
        for dtype in args.dtypes:
            config = replace(SFTConfig(), preset=preset, compute_dtype=dtype, batch_size=args.batch_size)
            peak = peak_tflops(info["device"]["kind"], dtype, args.peak_tflops)
            rows.append(measure(config, args.sample_batch, args.reps, peak))

    lines = [
        f"Toy-text LM on the sentiment task, {info['device']['kind']} ({info['device']['platform']}), "
        f"jax {info['versions']['jax']}, {info['date']}",
        "",
        "| model | dtype | params (non-emb.) | train batch x len | train step ms | train tokens/s | MFU | "
        "sample tokens/s, KV cache | without cache | cache speed-up |",
        "| --- " * 10 + "|",
    ]
    for r in rows:
        mfu = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
        params = f"{r['parameters'] / 1e6:.2f}M ({r['non_embedding_parameters'] / 1e6:.2f}M)"
        lines.append(
            f"| {r['preset']} | {r['dtype']} | {params} "
            f"| {r['batch_size']} x {r['sequence_length']} | {r['train_step_seconds'] * 1e3:.1f} "
            f"| {r['train_tokens_per_second']:,.0f} | {mfu} | {r['sample_tokens_per_second_cached']:,.0f} "
            f"| {r['sample_tokens_per_second_uncached']:,.0f} | {r['cache_speedup']:.1f}x |"
        )
    if len(args.sample_batch) > 1:
        lines += ["", "KV-cached sampling tokens/s by batch size:", "",
                  "| model | dtype | " + " | ".join(f"batch {b}" for b in args.sample_batch) + " |",
                  "| --- " * (2 + len(args.sample_batch)) + "|"]  # fmt: skip
        for r in rows:
            by_batch = r["sample_tokens_per_second_cached_by_batch"]
            lines.append(
                f"| {r['preset']} | {r['dtype']} | " + " | ".join(f"{by_batch[b]:,.0f}" for b in by_batch) + " |"
            )
    table = "\n".join(lines)
    print(table)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"lm_throughput_{args.tag}.md").write_text(table + "\n")
    (out / f"lm_throughput_{args.tag}.json").write_text(json.dumps({"rows": rows} | info, indent=2) + "\n")


if __name__ == "__main__":
    main()
