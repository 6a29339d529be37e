"""Time, FLOPs and memory of one update of DPO, PPO and GRPO on the toy LM, at 64 sequences per update.

    python benchmarks/lm_alignment.py                                  # CPU: tiny model, about 2 minutes
    python benchmarks/lm_alignment.py --presets tiny small --tag gpu   # on a GPU

Every method starts from the same freshly initialised SFT model on sentiment (the cost of a step does not
depend on what the weights have learned: prompts, completions and the generated block have fixed shapes) and
sees 64 sequences per update, as in ``experiments/lm/alignment.py``:
- ``dpo``: 32 pairs (64 sequences), one gradient step of the policy; the reference log-probs are computed
  once before training (not counted). No sampling.
- ``ppo``: 64 prompts x 1 completion, sampled and scored, then 4 epochs x 2 minibatches over policy and critic.
- ``grpo``: 8 prompts x 8 completions, then its default 1 epoch x 1 minibatch over the policy alone.
- ``grpo 4x2`` takes PPO's 4 x 2 gradient steps and ``ppo 1x1`` GRPO's single one, so that each pair
  differs only by the critic (and the memory of a 64-sequence gradient step compares with DPO's).
Measured: ``sample`` = the rollout (KV-cache generation of the whole completion block, decoding, the task's
reward), with its generated tokens/s; ``update`` = the jitted update (log-probs of policy and reference,
values, advantages, all gradient steps). Model FLOPs of an update count ``2 N`` per token of each forward-only
pass over the 64 sequences (old and reference log-probs, PPO's values) and ``6 N`` per token of each trained
pass (one per epoch, per network), N = non-embedding parameters, every position of the padded sequence, as
``lm_throughput.py`` (XLA's cost analysis counts a scan's body once, so it cannot count the epochs). MFU is
against the device's float32 peak where known (``lm_throughput.PEAK_TFLOPS``). Memory: trained parameters +
AdamW state, and the compiled update's arguments + outputs + temporaries - aliased
(``update_memory.compiled_bytes``).
Each time is the median of ``--reps`` calls after compiling. Also counted: lines of code (no blank lines,
comments or docstrings) of each method's own file and of the LM modules it needs beyond SFT and the model.
Results: benchmarks/results/lm_alignment_<tag>.{json,md}.
"""

import argparse
import ast
import io
import json
import tempfile
import tokenize
from collections.abc import Callable
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from lm_throughput import median_seconds, peak_tflops
from update_memory import compiled_bytes, tree_bytes

import purerl  # noqa: F401  (safe XLA defaults before JAX starts)
from purerl.io.run import environment_info
from purerl.lm.dpo import DPOConfig, make_dpo
from purerl.lm.grpo import LMGRPOConfig, make_lm_grpo
from purerl.lm.model import count_params
from purerl.lm.ppo import LMPPOConfig, make_lm_ppo
from purerl.lm.preference_data import save_pairs
from purerl.lm.sft import SFTConfig, make_sft
from purerl.lm.tokenizer import completion_block_length

RESULTS = Path(__file__).parent / "results"
PACKAGE = Path(__file__).parent.parent / "purerl"
SEQUENCES = 64
# Each method's own file first, then the LM modules it needs beyond SFT and the model (the core's gae,
# losses, group advantages, KL estimators and minibatch loop are shared with the control agents and not counted).
METHOD_MODULES = {
    "reward model": ("lm/reward_model.py", "lm/preference_data.py", "core/preference.py"),
    "dpo": ("lm/dpo.py", "lm/preference_data.py", "core/preference.py"),
    "ppo": ("lm/ppo.py", "lm/rollout.py"),
    "grpo": ("lm/grpo.py", "lm/rollout.py"),
}


def code_lines(path: Path) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    source = path.read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    skipped = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    lines = {
        line
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type not in skipped
        for line in range(token.start[0], token.end[0] + 1)
    }
    return len(lines - docstrings)


def method_code_lines() -> list[dict]:
    return [
        {
            "method": method,
            "own_file": modules[0],
            "own_lines": code_lines(PACKAGE / modules[0]),
            "with_lm_modules": sum(code_lines(PACKAGE / module) for module in modules),
            "modules": list(modules),
        }
        for method, modules in METHOD_MODULES.items()
    ]


def demonstration_pairs(config: SFTConfig, n: int) -> list[dict]:
    """``n`` pairs of demonstrations for one prompt each (what they say does not change the cost)."""
    task = config.task_instance
    prompts, first = task.demonstrations(np.random.default_rng(0), n)
    second = task.demonstrations(np.random.default_rng(1), n)[1]
    return [
        {"prompt": p, "chosen": c, "rejected": r, "chosen_reward": 0.0, "rejected_reward": 0.0, "flipped": False}
        for p, c, r in zip(prompts, first, second, strict=True)
    ]


def update_cost(update, args, reps: int) -> dict:
    """Median seconds of the jitted ``update(*args)`` and its compiled memory."""
    return {
        "update_seconds": median_seconds(lambda: update(*args)[1], reps),
        "update_memory_bytes": compiled_bytes(update.lower(*args).compile()),
    }


def policy_gradient_row(name: str, method, reps: int, new_tokens: int) -> dict:
    state = method.state
    sample_seconds = median_seconds(lambda: method.sample(state, 0), reps)
    result, key = method.sample(state, 0)
    completions = len(result.completions)
    return {
        "method": name,
        "sequences": completions,
        "sample_seconds": sample_seconds,
        "sample_tokens_per_second": completions * new_tokens / sample_seconds,
        "state_bytes": tree_bytes((state.params, state.opt_state)),
    } | update_cost(method.update, (state, result.batch, jnp.asarray(result.scores), key), reps)


def measure(preset: str, reps: int, peak: float | None) -> list[dict]:
    sft_config = SFTConfig(preset=preset)
    sft_params = make_sft(sft_config).state.params
    new_tokens = completion_block_length(sft_config.task_instance.max_completion_chars)
    rows = []
    with tempfile.TemporaryDirectory() as pairs_dir:
        save_pairs(demonstration_pairs(sft_config, 4 * SEQUENCES), Path(pairs_dir) / "pairs.jsonl")
        dpo_config = DPOConfig(init="unused", pairs=(pairs_dir,), batch_size=SEQUENCES // 2)
        dpo = make_dpo(dpo_config, sft_config, sft_params)
        rows.append(
            {
                "method": "dpo",
                "sequences": SEQUENCES,
                "gradient_steps": 1,
                "forward_passes": 0,  # the reference's log-probs are computed before training
                "trained_passes": 1,
                "sample_seconds": 0.0,
                "sample_tokens_per_second": None,
                "state_bytes": tree_bytes((dpo.state.params, dpo.state.opt_state)),
            }
            | update_cost(dpo.update, (dpo.state, *dpo.sample(dpo.state, 0)), reps)
        )
    # name: (make, config, forward-only passes, networks trained): PPO also runs and trains its critic
    policy_gradients: dict[str, tuple[Callable, object, int, int]] = {
        "ppo": (make_lm_ppo, LMPPOConfig(init="unused", prompts_per_step=SEQUENCES), 3, 2),
        "grpo": (make_lm_grpo, LMGRPOConfig(init="unused", prompts_per_step=SEQUENCES // 8, group_size=8), 2, 1),
        "grpo 4x2": (
            make_lm_grpo,
            LMGRPOConfig(init="unused", prompts_per_step=SEQUENCES // 8, group_size=8, epochs=4, minibatches=2),
            2,
            1,
        ),
        "ppo 1x1": (make_lm_ppo, LMPPOConfig(init="unused", prompts_per_step=SEQUENCES, epochs=1, minibatches=1), 3, 2),
    }
    for name, (make, config, forward_passes, networks) in policy_gradients.items():
        row = policy_gradient_row(name, make(config, sft_config, sft_params, None), reps, new_tokens)
        passes = {"forward_passes": forward_passes, "trained_passes": config.epochs * networks}
        rows.append(row | passes | {"gradient_steps": config.updates_per_step})
    _, non_embedding = count_params(sft_params)
    tokens = SEQUENCES * dpo.model.config.max_len
    for row in rows:
        row |= {"preset": preset, "sequence_length": dpo.model.config.max_len}
        row["total_seconds"] = row["sample_seconds"] + row["update_seconds"]
        row["update_flops"] = non_embedding * tokens * (2 * row["forward_passes"] + 6 * row["trained_passes"])
        row["update_tflops_per_second"] = row["update_flops"] / row["update_seconds"] / 1e12
        row["mfu"] = None if peak is None else row["update_tflops_per_second"] / peak
        print(row, flush=True)
    return rows


def mib(x: int) -> str:
    return f"{x / 2**20:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["tiny"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, help="the device's float32 peak, for MFU where it is not known")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()
    info = environment_info()
    peak = peak_tflops(info["device"]["kind"], "float32", args.peak_tflops)
    rows = [row for preset in args.presets for row in measure(preset, args.reps, peak)]
    code = method_code_lines()

    lines = [
        f"DPO, PPO and GRPO updates at {SEQUENCES} sequences on the sentiment task, {info['device']['kind']} "
        f"({info['device']['platform']}), jax {info['versions']['jax']}, {info['date']}",
        "",
        "| model | method | gradient steps | sample s | sample tokens/s | update s | total s | update GFLOP "
        "| update TFLOP/s | MFU | params + AdamW MiB | update program MiB |",
        "| --- " * 12 + "|",
    ]
    for r in rows:
        sample_tps = "-" if r["sample_tokens_per_second"] is None else f"{r['sample_tokens_per_second']:,.0f}"
        mfu = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
        lines.append(
            f"| {r['preset']} | {r['method']} | {r['gradient_steps']} | {r['sample_seconds']:.3f} | {sample_tps} "
            f"| {r['update_seconds']:.3f} | {r['total_seconds']:.3f} | {r['update_flops'] / 1e9:,.1f} "
            f"| {r['update_tflops_per_second']:.3f} | {mfu} | {mib(r['state_bytes'])} "
            f"| {mib(r['update_memory_bytes'])} |"
        )
    lines += ["", "| method | lines of code: own file | with the LM modules it needs |", "| --- " * 3 + "|"]
    lines += [f"| {c['method']} | {c['own_lines']} ({c['own_file']}) | {c['with_lm_modules']} |" for c in code]
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"lm_alignment_{args.tag}.md").write_text(table + "\n")
    results = {"rows": rows, "code_lines": code} | info
    (RESULTS / f"lm_alignment_{args.tag}.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
