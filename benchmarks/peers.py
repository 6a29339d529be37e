"""purerl PPO beside its peers, at equal settings, in one command: env steps/s, compile time, final return.

    pip install -e ".[peers]"                  # rejax 0.1.3 (same environment as purerl)
    python -m venv .venv-sb3 && .venv-sb3/bin/pip install torch==2.13.0 stable-baselines3 gymnasium
    python benchmarks/peers.py --sb3-python .venv-sb3/bin/python      # about 15 minutes on 2 CPU cores

Runs, on CartPole-v1 with PureJaxRL's PPO settings (4 envs x 128 steps, 4 epochs x 4 minibatches, lr 2.5e-4,
gamma 0.99, lambda 0.95, clip 0.2, entropy 0.01, value 0.5, grad norm 0.5, 64x64 tanh actor and critic):
- purerl, ``jit(vmap(train))`` over the seeds, truncation treated as termination (as the peers do);
- rejax 0.1.3 in this same process, ``jit(vmap(algo.train))``, behind a small adapter: rejax calls gymnax's
  old 5-tuple ``step``, gymnax 1.0 returns ``terminated`` and ``truncated`` separately;
- Stable-Baselines3 PPO (torch 2.13.0 CPU, its own environment: gymnax pins a different gymnasium), one
  seed in a subprocess (``benchmarks/sb3_ppo.py``), what most users would otherwise run.
The learning rate is constant for all three (rejax does not anneal it). Each JAX variant is compiled apart
(``lower().compile()``) and then timed over ``--reps`` runs (median); the JAX variants alternate so drift hits
both. Final return: 128 evaluation episodes per seed with the stochastic policy after training (rejax's own
evaluation, which it runs inside ``train``, so its timed runs include those 128 episodes once).
Results go to benchmarks/results/peers_<tag>.{json,md}.
"""

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import jax
import numpy as np

import purerl  # noqa: F401  (safe XLA defaults before JAX starts)
from purerl.control.ppo import PPOConfig, evaluate, make_train
from purerl.io.run import environment_info

SETTINGS = {
    "env": "CartPole-v1",
    "num_envs": 4,
    "num_steps": 128,
    "update_epochs": 4,
    "num_minibatches": 4,
    "learning_rate": 2.5e-4,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_eps": 0.2,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
}


class FiveTupleStep:
    """gymnax >= 1.0 ``step`` returns ``(obs, state, reward, terminated, truncated, info)``; rejax 0.1.3
    unpacks gymnax's former ``(obs, state, reward, done, info)``. This gives it ``done = terminated |
    truncated`` and passes everything else through to the wrapped environment."""

    def __init__(self, env):
        self.env = env

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        return obs, state, reward, terminated | truncated, info

    def __getattr__(self, name):
        if "env" not in self.__dict__:  # during copy.deepcopy (rejax copies its config), before __init__
            raise AttributeError(name)
        return getattr(self.env, name)


def timed(compiled, keys, reps):
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        out = jax.block_until_ready(compiled(keys))
        times.append(time.perf_counter() - start)
    return out, times


def purerl_variant(total_timesteps: int, num_seeds: int):
    config = PPOConfig(
        **SETTINGS,
        total_timesteps=total_timesteps,
        anneal_lr=False,
        bootstrap_truncation=False,
        hidden_sizes=(64, 64),
        activation="tanh",
    )
    keys = jax.random.split(jax.random.key(0), num_seeds)
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(make_train(config))).lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    evaluate_runs = jax.jit(jax.vmap(evaluate))

    def final_return(out):
        state, _ = out
        returns = evaluate_runs(state)["returns"]  # each seed's evaluation stream
        return float(np.mean(returns))

    env_steps = config.num_updates * config.batch_size
    return compiled, keys, compile_seconds, final_return, env_steps


def rejax_variant(total_timesteps: int, num_seeds: int):
    import gymnax
    import rejax

    env, env_params = gymnax.make(SETTINGS["env"])
    batch = SETTINGS["num_envs"] * SETTINGS["num_steps"]
    total = (total_timesteps // batch) * batch
    algo = rejax.PPO.create(
        env=FiveTupleStep(env),
        env_params=env_params,
        total_timesteps=total,
        eval_freq=total,  # evaluate once, at the end
        skip_initial_evaluation=True,
        num_envs=SETTINGS["num_envs"],
        num_steps=SETTINGS["num_steps"],
        num_epochs=SETTINGS["update_epochs"],
        num_minibatches=SETTINGS["num_minibatches"],
        learning_rate=SETTINGS["learning_rate"],
        gamma=SETTINGS["gamma"],
        gae_lambda=SETTINGS["gae_lambda"],
        clip_eps=SETTINGS["clip_eps"],
        ent_coef=SETTINGS["ent_coef"],
        vf_coef=SETTINGS["vf_coef"],
        max_grad_norm=SETTINGS["max_grad_norm"],
        agent_kwargs={"hidden_layer_sizes": (64, 64), "activation": "tanh"},
    )
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(algo.train)).lower(keys).compile()
    compile_seconds = time.perf_counter() - start

    def final_return(out):
        _, (lengths, returns) = out  # rejax's evaluation: [seeds, evaluations, 128 episodes]
        return float(np.mean(np.asarray(returns)[:, -1]))

    return compiled, keys, compile_seconds, final_return, total


def run_sb3(python: str, total_timesteps: int) -> dict:
    script = Path(__file__).parent / "sb3_ppo.py"
    args = [python, str(script), "--timesteps", str(total_timesteps), "--settings", json.dumps(SETTINGS)]
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--timesteps", type=int, default=150_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sb3-python", help="python of an environment with stable-baselines3 (none: skip SB3)")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()

    rows = []
    for num_seeds in args.seeds:
        variants = {
            "purerl": purerl_variant(args.timesteps, num_seeds),
            "rejax 0.1.3": rejax_variant(args.timesteps, num_seeds),
        }
        times = {name: [] for name in variants}
        outputs = {}
        for _ in range(args.reps):
            for name, (compiled, keys, *_rest) in variants.items():
                outputs[name], seconds = timed(compiled, keys, 1)
                times[name] += seconds
        for name, (_, _, compile_seconds, final_return, env_steps) in variants.items():
            median = statistics.median(times[name])
            rows.append(
                {
                    "library": name,
                    "seeds": num_seeds,
                    "env_steps_per_seed": env_steps,
                    "compile_seconds": compile_seconds,
                    "run_seconds": median,
                    "run_seconds_all": times[name],
                    "env_steps_per_second": env_steps * num_seeds / median,
                    "final_return": final_return(outputs[name]),
                }
            )
            print(rows[-1], flush=True)
    if args.sb3_python:
        sb3 = run_sb3(args.sb3_python, args.timesteps)
        rows.append({"library": f"Stable-Baselines3 {sb3['version']} (torch {sb3['torch']})", "seeds": 1} | sb3)
        print(rows[-1], flush=True)

    for num_seeds in args.seeds:
        pure, peer = (next(r for r in rows if r["library"] == lib and r["seeds"] == num_seeds) for lib in
                      ("purerl", "rejax 0.1.3"))  # fmt: skip
        pure["speedup_vs_rejax"] = pure["env_steps_per_second"] / peer["env_steps_per_second"]

    lines = [
        "| library | seeds | env steps/seed | compile s | run s (median) | env steps/s | vs rejax | final return |",
        "| --- " * 8 + "|",
    ]
    for r in rows:
        speedup = f"{r['speedup_vs_rejax']:.2f}x" if "speedup_vs_rejax" in r else ""
        lines.append(
            f"| {r['library']} | {r['seeds']} | {r['env_steps_per_seed']:,} | {r.get('compile_seconds', 0):.1f} | "
            f"{r['run_seconds']:.1f} | {r['env_steps_per_second']:,.0f} | {speedup} | {r['final_return']:.1f} |"
        )
    info = environment_info()
    title = f"PPO on CartPole-v1, {info['device']['kind']} ({info['machine']['cpu_count']} cores), {info['date']}"
    table = "\n".join([title, "", *lines])
    print(table)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"peers_{args.tag}.md").write_text(table + "\n")
    (out / f"peers_{args.tag}.json").write_text(
        json.dumps({"settings": SETTINGS, "rows": rows} | info, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
