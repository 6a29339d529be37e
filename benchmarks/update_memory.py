"""Memory of one PPO and one GRPO update at the same batch size, from XLA's compiled memory analysis.

    python benchmarks/update_memory.py              # CPU, about 2 minutes on 2 cores
    python benchmarks/update_memory.py --tag gpu    # on a GPU

The claim under test: "GRPO needs about 40% less memory than PPO because it has no critic". Both agents see
the same number of env steps per update: PPO 64 envs x 500 steps, GRPO 8 groups x 8 episodes x 500 steps
(CartPole-v1's horizon), 4 epochs of 4 minibatches (8,000 steps each), for two network widths. Nothing is
run: each program is compiled (``jit(...).lower(...).compile()``) and XLA's buffer assignment reports its
sizes. Reported: parameters + Adam state, and per program arguments + outputs + temporaries - aliased.

- ``update``: a whole training run of one update (init, rollout, advantages, all epochs), for 1 seed and
  for 16 vmapped seeds.
- ``gradient step``: the loss gradient of one minibatch, the part in which the critic's activations live.
Results go to benchmarks/results/update_memory_<tag>.{json,md}.
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import purerl  # noqa: F401  (safe XLA defaults before JAX starts)
from purerl.control import grpo, ppo
from purerl.control.policy import make_network
from purerl.core.networks import ActorCritic
from purerl.io.run import environment_info

RESULTS = Path(__file__).parent / "results"
PPO = ppo.PPOConfig(env="CartPole-v1", num_envs=64, num_steps=500, total_timesteps=32_000, num_minibatches=4)
GRPO = grpo.GRPOConfig(env="CartPole-v1", num_groups=8, group_size=8, num_updates=1, num_minibatches=4)
WIDTHS = ((64, 64), (256, 256))


def compiled_bytes(compiled) -> int:
    """Arguments + outputs + temporaries - aliased bytes of a compiled program: what it holds at most.

    (XLA's own ``peak_memory_in_bytes`` is not used: on the CPU backend it reports less than the
    temporaries alone.)"""
    stats = compiled.memory_analysis()
    return int(
        stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes
    )


def tree_bytes(tree) -> int:
    return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def update_memory(make_train, config, num_seeds: int) -> int:
    keys = jax.random.split(jax.random.key(0), num_seeds)
    compiled = jax.jit(jax.vmap(make_train(config))).lower(keys).compile()
    return compiled_bytes(compiled)


def state_bytes(make_train, config) -> int:
    """Parameters + optimiser state of one seed (from the abstract output: nothing runs)."""
    state, _ = jax.eval_shape(make_train(config), jax.random.key(0))
    return tree_bytes((state.train_state.params, state.train_state.opt_state))


def ppo_gradient_memory(config: ppo.PPOConfig) -> int:
    network = make_network(config)
    params = network.init(jax.random.key(0), jnp.zeros((1, config.spec.obs_dim)))
    n = config.minibatch_size
    minibatch = {
        "obs": jnp.zeros((n, config.spec.obs_dim)),
        "action": jnp.zeros((n,), jnp.int32),
        **{name: jnp.zeros((n,)) for name in ("log_prob", "value", "advantages", "targets")},
    }
    grad = jax.jit(lambda p, mb: jax.grad(ppo.ppo_loss, has_aux=True)(p, network, config, mb))
    return compiled_bytes(grad.lower(params, minibatch).compile())


def grpo_gradient_memory(config: grpo.GRPOConfig) -> int:
    network = make_network(config)
    params = network.init(jax.random.key(0), jnp.zeros((1, config.spec.obs_dim)), method=ActorCritic.policy)
    shape = (config.horizon, config.num_episodes // config.num_minibatches)
    minibatch = {
        "obs": jnp.zeros((*shape, config.spec.obs_dim)),
        "action": jnp.zeros(shape, jnp.int32),
        "log_prob": jnp.zeros(shape),
        "advantages": jnp.zeros(shape),
        "valid": jnp.ones(shape, bool),
    }
    grad = jax.jit(lambda p, mb: jax.grad(grpo.grpo_loss, has_aux=True)(p, network, config, mb))
    return compiled_bytes(grad.lower(params, minibatch).compile())


def mib(x: int) -> str:
    return f"{x / 2**20:,.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()
    assert PPO.batch_size == GRPO.num_episodes * GRPO.horizon and PPO.num_updates == 1
    rows = []
    for width in WIDTHS:
        ppo_config, grpo_config = replace(PPO, hidden_sizes=width), replace(GRPO, hidden_sizes=width)
        measures = {
            "params + Adam state": (state_bytes(ppo.make_train, ppo_config), state_bytes(grpo.make_train, grpo_config)),
        }
        for seeds in (1, 16):
            measures[f"update, {seeds} seed(s)"] = (
                update_memory(ppo.make_train, ppo_config, seeds),
                update_memory(grpo.make_train, grpo_config, seeds),
            )
        measures["gradient step, one 8,000-step minibatch"] = (
            ppo_gradient_memory(ppo_config),
            grpo_gradient_memory(grpo_config),
        )
        for what, (ppo_bytes, grpo_bytes) in measures.items():
            rows.append(
                {
                    "hidden_sizes": list(width),
                    "measure": what,
                    "ppo_bytes": ppo_bytes,
                    "grpo_bytes": grpo_bytes,
                    "grpo_saving": 1.0 - grpo_bytes / ppo_bytes,
                }
            )
            print(
                f"{str(width):12} {what:42} PPO {mib(ppo_bytes):>10} MiB  GRPO {mib(grpo_bytes):>10} MiB  "
                f"GRPO saves {rows[-1]['grpo_saving']:6.1%}",
                flush=True,
            )

    info = environment_info()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"update_memory_{args.tag}.json").write_text(json.dumps({"rows": rows} | info, indent=2) + "\n")
    lines = [
        f"# PPO vs GRPO update memory ({info['device']['kind']}, jax {info['versions']['jax']}, {info['date'][:10]})",
        "",
        "Same env steps per update (32,000 = 64 envs x 500 steps vs 8 groups x 8 episodes x 500 steps), "
        "4 epochs x 4 minibatches; XLA compiled memory analysis. Command: `python benchmarks/update_memory.py"
        + ("" if args.tag == "cpu" else f" --tag {args.tag}")
        + "`.",
        "",
        "| hidden sizes | measure | PPO MiB | GRPO MiB | GRPO saves |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {tuple(row['hidden_sizes'])} | {row['measure']} | {mib(row['ppo_bytes'])} | {mib(row['grpo_bytes'])} "
            f"| {row['grpo_saving']:.1%} |"
        )
    (RESULTS / f"update_memory_{args.tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
