"""``purerl`` command line.

    purerl train ppo --env CartPole-v1 --seeds 16 --total-timesteps 500000 --out runs/x
    purerl train ppo --config experiments/ppo/CartPole-v1.json --seeds 16 --out runs/cartpole
    purerl train grpo --env CartPole-v1 --group-size 8 --beta 0.04 --seeds 16 --out runs/grpo

Every config field is a flag (``purerl train ppo --help`` lists them with defaults). Bad input stops with
one line naming the value and what is allowed, before anything compiles.
"""

import argparse
import sys
from pathlib import Path

from purerl.io.config_io import add_config_flags, config_from_args
from purerl.io.run import ALGORITHMS, run_and_write


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="purerl", description="Pure-JAX RL: many seeds in one jitted run.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train an agent over many seeds and write results")
    algorithms = train.add_subparsers(dest="algorithm", required=True)
    for name, algo in ALGORITHMS.items():
        sub = algorithms.add_parser(name, help=f"train {name.upper()}")
        sub.add_argument("--seeds", type=int, default=16, help="number of seeds trained in parallel [16]")
        sub.add_argument("--seed", type=int, default=0, help="base seed; seed i uses split(key(seed), n)[i] [0]")
        sub.add_argument("--out", type=Path, default=Path("runs") / name, help="output directory [runs/<algo>]")
        sub.add_argument("--config", type=Path, help="JSON config file; explicit flags override it")
        add_config_flags(sub, algo.config_cls)
    return parser


def print_summary(summary: dict, out: Path) -> None:
    evaluation, training = summary["eval"], summary["train"]
    low, high = summary["env_steps_per_seed_range"]
    spread = "" if low == high else f" (mean; {low:,} to {high:,} per seed)"
    print(
        f"\n{summary['algorithm'].upper()} on {summary['env']}: {summary['num_seeds']} seeds x "
        f"{summary['env_steps_per_seed']:,} env steps{spread}"
    )
    print(f"{'':22}{'mean':>10}{'IQM':>10}{'IQM 95% CI':>22}")
    for label, stats in (("eval return", evaluation), ("train return", training)):
        ci = f"[{stats['iqm_ci_low']:.1f}, {stats['iqm_ci_high']:.1f}]"
        print(f"{label:22}{stats['mean']:>10.1f}{stats['iqm']:>10.1f}{ci:>22}")
    print(f"eval: {evaluation['protocol']}; train: {training['protocol']}")
    print(
        f"compile {summary['compile_seconds']:.1f} s, train {summary['train_seconds']:.1f} s, "
        f"{summary['env_steps_per_second']:,.0f} env steps/s on {summary['device']['kind']}"
    )
    print(f"wrote {out}/config.json, metrics.csv, eval.npz, summary.json, learning_curve.png")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    algo = ALGORITHMS[args.algorithm]
    try:
        if args.seeds <= 0:
            raise ValueError(f"--seeds must be > 0, got {args.seeds}")
        config = config_from_args(algo.config_cls, args)
        summary = run_and_write(args.algorithm, config, args.seeds, args.out, args.seed)
    except ValueError as error:
        parser.exit(2, f"purerl: error: {error}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"\npurerl: interrupted; {args.out}/config.json was written, no results yet\n")
    print_summary(summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
