"""Where PPO's time goes: the environment alone, the rollout, and each gradient step, by varying epochs.

    python benchmarks/ppo_time_breakdown.py                                   # about 6 minutes on 2 CPU cores
    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=dot python benchmarks/ppo_time_breakdown.py --tag cpu_ynn_dot

PureJaxRL's CartPole PPO configuration at 150k env steps per seed, ``jit(vmap(train))`` over ``--seeds``.
A whole run costs about ``rollout + gradient_steps * cost_per_step``; training with 1, 2 and 4 epochs
(4, 8 and 16 minibatch steps per update) fits that line, so the intercept is the rollout (policy, env,
GAE) and the slope is one minibatch step (forward, backward, Adam) for all seeds. The env alone is timed
with uniformly random actions through purerl's vectorised env stack. Each variant: median of ``--reps``
runs after compiling. ``XLA_FLAGS`` is recorded with the results, so runs under different flags compare.
Results go to benchmarks/results/ppo_time_breakdown_<tag>.{json,md}.
"""

import argparse
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from ppo_throughput import PUREJAXRL_CARTPOLE  # noqa: E402  (run from the repository root or benchmarks/)

import purerl  # noqa: F401  (safe XLA defaults before JAX starts)
from purerl.control.ppo import make_env, make_train
from purerl.io.run import environment_info

EPOCHS = (1, 2, 4)


def median_seconds(fn, keys, reps: int) -> float:
    compiled = jax.jit(jax.vmap(fn)).lower(keys).compile()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(compiled(keys))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_random_actions_run(config):
    """The env stack stepped ``num_updates * num_steps`` times with uniformly random discrete actions."""
    env = make_env(config, config.num_envs, training=True)
    num_actions = config.spec.action_dim

    def run(key):
        reset_key, run_key = jax.random.split(key)
        _, env_state = env.reset(reset_key)

        def step(carry, step_key):
            action_key, env_key = jax.random.split(step_key)
            action = jax.random.randint(action_key, (config.num_envs,), 0, num_actions)
            _, env_state, reward, *_ = env.step(env_key, carry, action)
            return env_state, jnp.sum(reward)

        steps = config.num_updates * config.num_steps
        _, rewards = jax.lax.scan(step, env_state, jax.random.split(run_key, steps))
        return jnp.sum(rewards)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--timesteps", type=int, default=150_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()

    base = replace(PUREJAXRL_CARTPOLE, total_timesteps=args.timesteps)
    keys = jax.random.split(jax.random.key(0), args.seeds)
    env_seconds = median_seconds(make_random_actions_run(base), keys, args.reps)
    train_seconds = {
        epochs: median_seconds(make_train(replace(base, update_epochs=epochs)), keys, args.reps) for epochs in EPOCHS
    }
    steps_per_update = {epochs: epochs * base.num_minibatches for epochs in EPOCHS}
    total_steps = np.array([steps_per_update[e] * base.num_updates for e in EPOCHS], float)
    slope, intercept = np.polyfit(total_steps, np.array([train_seconds[e] for e in EPOCHS]), 1)
    full = train_seconds[base.update_epochs]
    gradient_seconds = slope * steps_per_update[base.update_epochs] * base.num_updates

    rows = [
        {"part": "env alone (random actions)", "seconds": env_seconds},
        {"part": "rollout: policy + env + GAE (fit intercept)", "seconds": intercept},
        {
            "part": f"{base.update_epochs} epochs x {base.num_minibatches} minibatch steps (fit)",
            "seconds": gradient_seconds,
        },
        {"part": f"whole run, {base.update_epochs} epochs (measured)", "seconds": full},
    ]
    per_step_ms = slope * 1e3
    info = environment_info()
    xla_flags = os.environ.get("XLA_FLAGS", "")
    lines = [
        f"PPO CartPole, {args.seeds} seeds x {base.num_updates * base.batch_size:,} env steps, "
        f"{info['device']['kind']} ({info['device']['platform']}), jax {info['versions']['jax']}, {info['date']}",
        f"XLA_FLAGS: `{xla_flags}`",
        "",
        "| part | seconds | share of whole run |",
        "| --- | --- | --- |",
        *(f"| {r['part']} | {r['seconds']:.2f} | {r['seconds'] / full:.0%} |" for r in rows),
        "",
        "| epochs | minibatch steps per update | whole run s |",
        "| --- | --- | --- |",
        *(f"| {e} | {steps_per_update[e]} | {train_seconds[e]:.2f} |" for e in EPOCHS),
        "",
        f"One minibatch step ({base.minibatch_size} samples per seed, all {args.seeds} seeds): {per_step_ms:.2f} ms.",
    ]
    table = "\n".join(lines)
    print(table)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"ppo_time_breakdown_{args.tag}.md").write_text(table + "\n")
    result = {
        "seeds": args.seeds,
        "env_steps_per_seed": base.num_updates * base.batch_size,
        "xla_flags": xla_flags,
        "rows": rows,
        "train_seconds_by_epochs": train_seconds,
        "minibatch_step_ms": per_step_ms,
    }
    (out / f"ppo_time_breakdown_{args.tag}.json").write_text(json.dumps(result | info, indent=2) + "\n")


if __name__ == "__main__":
    main()
