"""Stable-Baselines3 PPO on CartPole-v1 with purerl's benchmark settings; prints one JSON line.

Run by benchmarks/peers.py with the python of an environment that has stable-baselines3 and torch 2.13.0
(CPU): SB3 needs a gymnasium that gymnax's pin excludes, so it cannot share purerl's environment.
"""

import argparse
import json
import time

import gymnasium
import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timesteps", type=int, required=True)
    parser.add_argument("--settings", required=True, help="JSON of the shared PPO settings")
    args = parser.parse_args()
    s = json.loads(args.settings)
    torch.set_num_threads(1)  # SB3's small networks run fastest single-threaded; the env loop is Python
    env = make_vec_env(s["env"], n_envs=s["num_envs"], seed=0)
    batch = s["num_envs"] * s["num_steps"]
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=s["num_steps"],
        batch_size=batch // s["num_minibatches"],
        n_epochs=s["update_epochs"],
        learning_rate=s["learning_rate"],
        gamma=s["gamma"],
        gae_lambda=s["gae_lambda"],
        clip_range=s["clip_eps"],
        ent_coef=s["ent_coef"],
        vf_coef=s["vf_coef"],
        max_grad_norm=s["max_grad_norm"],
        policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh},
        device="cpu",
        seed=0,
    )
    total = (args.timesteps // batch) * batch
    start = time.perf_counter()
    model.learn(total_timesteps=total)
    seconds = time.perf_counter() - start
    returns, _ = evaluate_policy(
        model, gymnasium.make(s["env"]), n_eval_episodes=128, deterministic=False, return_episode_rewards=True
    )
    print(
        json.dumps(
            {
                "version": stable_baselines3.__version__,
                "torch": torch.__version__,
                "env_steps_per_seed": total,
                "run_seconds": seconds,
                "env_steps_per_second": total / seconds,
                "final_return": float(np.mean(returns)),
            }
        )
    )


if __name__ == "__main__":
    main()
