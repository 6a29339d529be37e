"""``purerl`` command line.

    purerl train ppo --env CartPole-v1 --seeds 16 --total-timesteps 500000 --out runs/x
    purerl train ppo --env CartPole-v1 --seeds 16 --out runs/cartpole     # CartPole's tuned config
    purerl train grpo --env CartPole-v1 --group-size 8 --beta 0.04 --seeds 16 --out runs/grpo
    purerl train ppo --resume runs/x            # continue an interrupted run from its newest checkpoint
    purerl sweep ppo --grid learning_rate=1e-4,3e-4,1e-3 --grid ent_coef=0,0.01 --seeds 32 --out runs/sweep
    purerl lm sft --task sentiment --out runs/sft    # fine-tune the toy-text LM on a task's demonstrations
    purerl lm pairs --init runs/sft --out runs/pairs # preference pairs sampled from it, labelled by the task
    purerl lm rm|dpo --init runs/sft --pairs runs/pairs --out runs/dpo
    purerl lm ppo|grpo --init runs/sft --out runs/grpo [--reward-model runs/rm]

Every config field is a flag (``purerl train ppo --help`` lists them with defaults). Bad input stops with
one line naming the value and what is allowed, before anything compiles.
"""

import argparse
import dataclasses
import math
import sys
from pathlib import Path

from purerl.control.demonstrations import load_demos
from purerl.core.sharding import is_main_process
from purerl.io.benchmark import BENCHMARKED, compare_benchmarks, run_benchmark
from purerl.io.checkpoints import CheckpointError
from purerl.io.collect import collect
from purerl.io.compile_cache import ENV_VAR, OFF, configure_compile_cache, default_directory
from purerl.io.config_io import add_config_flags, config_from_args, field_types, load_config_values
from purerl.io.lm_align import METHODS, load_method_config, run_method, run_pairs, with_absolute_paths
from purerl.io.lm_sft import load_sft_config, run_sft
from purerl.io.run import ALGORITHMS, title
from purerl.io.run_dir import (
    CHUNKING,
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_CHECKPOINT_MINUTES,
    RunSettings,
    load_run_dir,
    run_in_dir,
)
from purerl.io.stopping import DEFAULT_STOP_GRACE, Interrupted, NonFiniteError, check_stop_grace
from purerl.io.sweep import parse_grid, sweep_table
from purerl.io.tuned import control_config_from_args
from purerl.lm.preference_data import PairsConfig
from purerl.lm.sft import SFTConfig

RUN_FLAGS = ("seeds", "seed", "out", "config", *CHUNKING)  # fixed by a resumed run


def add_run_flags(sub: argparse.ArgumentParser, algorithm: str, config_cls: type) -> None:
    """The flags that ``train`` and ``sweep`` share."""
    sub.add_argument("--seeds", type=int, help="number of seeds trained in parallel (per sweep point) [16]")
    sub.add_argument("--seed", type=int, help="base seed; seed i uses split(key(seed), n)[i] [0]")
    sub.add_argument("--out", type=Path, help=f"output directory [runs/{algorithm}]")
    sub.add_argument(
        "--config",
        help="JSON config file, or 'defaults' for the generic defaults; explicit flags override it "
        "[the env's tuned config where purerl ships one (purerl/configs), else the defaults]",
    )
    add_chunking_flags(sub, ALGORITHMS[algorithm].chunk_help)
    sub.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR from its last checkpoint")
    add_tracker_flags(sub)
    add_stop_grace_flag(sub)
    add_compile_cache_flag(sub)
    add_config_flags(sub, config_cls)


def add_chunking_flags(sub: argparse.ArgumentParser, default_chunk: int | str) -> None:
    """How often a run can stop and how often it saves: a chunk longer than ``--stop-grace`` cannot end in
    time on Ctrl-C, and the updates since the last checkpoint are then lost."""
    sub.add_argument(
        "--chunk-updates",
        type=int,
        help=f"updates per jitted chunk; the run can stop and save between chunks [{default_chunk}]",
    )
    sub.add_argument(
        "--checkpoint-every",
        type=int,
        help=f"save a checkpoint every this many updates (0: only at the end and on Ctrl-C/SIGTERM) "
        f"[{DEFAULT_CHECKPOINT_EVERY}]",
    )
    sub.add_argument(
        "--checkpoint-minutes",
        type=float,
        help="also save at the end of the first chunk this many minutes after the last save, so that a kill "
        f"without warning loses at most about that much (0: never by time) [{DEFAULT_CHECKPOINT_MINUTES:g}]",
    )


def add_tracker_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files, one run per seed, after every chunk, to OUT/tensorboard "
        "(CleanRL's metric names; needs purerl[tensorboard])",
    )
    sub.add_argument(
        "--wandb",
        action="store_true",
        help="also write Weights & Biases runs in offline mode, one per seed, when the run ends, to OUT/wandb "
        "(upload later with wandb sync; needs purerl[wandb])",
    )


def add_compile_cache_flag(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--compile-cache",
        metavar="DIR",
        help=f"keep compiled programs in DIR so the next run of the same program skips XLA's compile; {OFF!r} "
        f"turns it off [${ENV_VAR}, else $JAX_COMPILATION_CACHE_DIR, else {default_directory()}]",
    )


def add_stop_grace_flag(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--stop-grace",
        type=float,
        default=DEFAULT_STOP_GRACE,
        metavar="SECONDS",
        help="after Ctrl-C or SIGTERM, wait this long for the running chunk (LM: step) to finish and be saved, "
        f"then exit without it, keeping the last checkpoint; schedulers send SIGKILL after their own grace "
        f"(SLURM's KillWait: 30 s) [{DEFAULT_STOP_GRACE:g}]",
    )


class OneLineErrors(argparse.ArgumentParser):
    """Bad flags (an unknown one, a value of the wrong type) end in one line, like every other bad input;
    subcommands' parsers are of this class too (``add_subparsers`` uses the parent's)."""

    def error(self, message: str):
        self.exit(2, f"purerl: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="purerl", description="Pure-JAX RL: many seeds in one jitted run.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train an agent over many seeds and write results")
    sweep = commands.add_parser("sweep", help="train a grid of hyperparameters x seeds in one compiled run")
    for command, verb in ((train, "train"), (sweep, "sweep")):
        algorithms = command.add_subparsers(dest="algorithm", required=True)
        for name, algo in ALGORITHMS.items():
            sub = algorithms.add_parser(name, help=f"{verb} {title(name)}")
            if verb == "sweep":
                sweepable = ", ".join(algo.config_cls.sweepable())
                sub.add_argument(
                    "--grid",
                    action="append",
                    default=[],
                    metavar="FIELD=V1,V2,...",
                    help=f"values of one field (repeat for a product grid); sweepable: {sweepable}",
                )
            add_run_flags(sub, name, algo.config_cls)
    bench = commands.add_parser(
        "benchmark",
        help="one algorithm over a suite of envs, resumable, with a report; or compare two",
        description="purerl benchmark --suite S --algo A --seeds N --out DIR: run (or continue) a benchmark. "
        "purerl benchmark compare DIR_A DIR_B --out DIR_C: compare two finished ones.",
    )
    bench.add_argument("compare", nargs="*", metavar="compare DIR_A DIR_B", help="compare two finished benchmarks")
    bench.add_argument(
        "--suite", default="classic", help="classic, minatar, bsuite, misc, all (gymnax), brax or playground [classic]"
    )
    bench.add_argument("--algo", default="ppo", choices=BENCHMARKED, help="[ppo]")
    bench.add_argument("--seeds", type=int, default=16, help="seeds per env [16]")
    bench.add_argument(
        "--seed", type=int, default=1, help="base seed [1: purerl's configs were tuned on base seed 0, so held out]"
    )
    bench.add_argument(
        "--out", type=Path, help="benchmark directory; the same command again continues it [runs/benchmark]"
    )
    bench.add_argument(
        "--budget", default="full", help="full: each env's budget; short: 1/10 of it (brax, playground: 1/50) [full]"
    )
    bench.add_argument("--envs", nargs="+", metavar="ENV", help="only these envs of the suite")
    add_chunking_flags(bench, "the algorithm's, as `purerl train ALGO --help` states it")
    add_tracker_flags(bench)
    add_stop_grace_flag(bench)
    add_compile_cache_flag(bench)
    demos = commands.add_parser(
        "collect",
        help="expert demonstrations from a finished run's policies (for purerl train bc)",
        description="Plays whole episodes with the final policies of a finished run and writes them as "
        "DIR/demos.npz + demos.json (format: purerl/control/demonstrations.py).",
    )
    demos.add_argument("--from", dest="run_dir", type=Path, required=True, metavar="RUN_DIR", help="a finished run")
    demos.add_argument("--episodes", type=int, required=True, help="episodes in all, an equal share per seed")
    demos.add_argument("--seed-index", type=int, action="append", help="this seed of the run (repeat; [all])")
    demos.add_argument("--greedy", action="store_true", help="the policy's mode instead of sampled actions")
    demos.add_argument("--seed", type=int, default=0, help="key of the episodes' resets and actions [0]")
    demos.add_argument("--out", type=Path, help="demonstration directory [runs/demos]")
    add_compile_cache_flag(demos)
    lm = commands.add_parser("lm", help="train the toy-text language model")
    lm_algorithms = lm.add_subparsers(dest="algorithm", required=True)
    for name, (config_cls, help_text) in LM_COMMANDS.items():
        sub = lm_algorithms.add_parser(name, help=help_text)
        sub.add_argument("--out", type=Path, help=f"output directory [runs/{name}]")
        sub.add_argument("--config", type=Path, help="JSON config file; explicit flags override it")
        if name != "pairs":
            sub.add_argument(
                "--resume", type=Path, metavar="DIR", help="continue the run in DIR from its last checkpoint"
            )
            add_stop_grace_flag(sub)
        add_compile_cache_flag(sub)
        add_config_flags(sub, config_cls)
    return parser


LM_COMMANDS: dict[str, tuple[type, str]] = {
    "sft": (SFTConfig, "supervised fine-tuning on a task's demonstrations"),
    "pairs": (PairsConfig, "preference pairs sampled from an SFT policy, labelled by the task's reward"),
    "rm": (METHODS["rm"][0], "a Bradley-Terry reward model on preference pairs"),
    "dpo": (METHODS["dpo"][0], "DPO (sigmoid, IPO or hinge) on preference pairs"),
    "ppo": (METHODS["ppo"][0], "KL-penalised PPO (RLHF) with a critic, on the task's reward or a reward model"),
    "grpo": (METHODS["grpo"][0], "GRPO: group-relative advantages, no critic, KL to the SFT reference"),
}


def print_summary(summary: dict, out: Path) -> None:
    evaluation, training = summary["eval"], summary["train"]
    low, high = summary["env_steps_per_seed_range"]
    spread = "" if low == high else f" (mean; {low:,} to {high:,} per seed)"
    offline = high == 0  # learnt from demonstrations alone (bc): no env steps, no training episodes
    budget = "demonstrations (no env steps)" if offline else f"{summary['env_steps_per_seed']:,} env steps{spread}"
    print(f"\n{title(summary['algorithm'])} on {summary['env']}: {summary['num_seeds']} seeds x {budget}")
    print(f"{'':22}{'mean':>10}{'IQM':>10}{'IQM 95% CI':>22}")
    metric = training.get("metric", "episode_return")
    train_label = "train return" if metric == "episode_return" else f"train {metric}"
    digits = 1 if metric == "episode_return" else 3
    for label, stats, places in (("eval return", evaluation, 1), (train_label, training, digits)):
        if math.isnan(stats["mean"]):  # no seed saw a training episode end in the last updates
            print(f"{label:22}{'-':>10}  no episode ended in the last updates")
            continue
        ci = f"[{stats['iqm_ci_low']:.{places}f}, {stats['iqm_ci_high']:.{places}f}]"
        print(f"{label:22}{stats['mean']:>10.{places}f}{stats['iqm']:>10.{places}f}{ci:>22}")
    print(f"eval: {evaluation['protocol']}; train: {training['protocol']}")
    rate = summary["env_steps_per_second"]
    speed = "" if offline or rate is None else f", {rate:,.0f} env steps/s"
    run = whole_run(summary["resumed_from_update"], summary["run_train_seconds"])
    print(f"compile {summary['compile_seconds']:.1f} s, train {summary['train_seconds']:.1f} s{speed} on "
          f"{summary['device']['kind']}{run}")  # fmt: skip
    files = "config.json, run.json, checkpoints/, metrics.csv, eval.npz, summary.json, learning_curve.png"
    print(f"wrote {out}/{files}{resumed_note(summary)}")


def print_sweep_summary(summary: dict, out: Path) -> None:
    run = whole_run(summary["resumed_from_update"], summary["run_train_seconds"])
    print(
        f"\n{title(summary['algorithm'])} sweep on {summary['env']}: {summary['num_points']} points x "
        f"{summary['num_seeds']} seeds, compile {summary['compile_seconds']:.1f} s, "
        f"train {summary['train_seconds']:.1f} s{run}"
    )
    print(sweep_table(summary))
    protocol = summary["protocol"]
    print(f"eval: {protocol['eval']}; AUC: {protocol['auc']}; CIs: {protocol['intervals']}")
    files = "config.json, run.json, checkpoints/, metrics.csv, eval.npz, sweep.json, sweep.md, curves.png, "
    print(f"wrote {out}/{files}aggregate.png, profiles.png{resumed_note(summary)}")


def whole_run(resumed_from: int, run_seconds: float | None) -> str:
    """A resumed run's training time over all its sessions, printed after its last session's."""
    if not resumed_from:
        return ""
    if run_seconds is None:
        return "; the whole run's time is unknown"
    return f"; the whole run trained {run_seconds:.1f} s"


def resumed_note(summary: dict) -> str:
    return f" (resumed at update {summary['resumed_from_update']})" if summary["resumed_from_update"] else ""


def refuse_settings_with_resume(args: argparse.Namespace, run_flags: tuple[str, ...]) -> None:
    """A resumed run keeps its saved settings: any of ``run_flags``, a config field or a grid given with
    ``--resume`` is an error naming them."""
    fixed = [name for name in run_flags if getattr(args, name) is not None]
    fixed += [name.removeprefix("field_") for name in vars(args) if name.startswith("field_")]
    fixed += ["grid"] if getattr(args, "grid", None) else []
    if fixed:
        flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise ValueError(f"--resume continues a run with its saved settings; drop {flags}")


def control_command(args: argparse.Namespace) -> dict:
    """``purerl train|sweep ALGORITHM``: a new run from the flags, or ``--resume DIR`` with its saved config
    and settings."""
    if args.resume is not None:
        refuse_settings_with_resume(args, RUN_FLAGS)
        algorithm, config, settings = load_run_dir(args.resume)
        if (algorithm, settings.command) != (args.algorithm, args.command):
            right = f"purerl {settings.command} {algorithm} --resume {args.resume}"
            raise ValueError(f"--resume {args.resume} is a {settings.command} {algorithm} run; use: {right}")
        # Trackers change no result: a resume may add some to those it was saved with (run_in_dir keeps those).
        settings = dataclasses.replace(settings, tensorboard=args.tensorboard, wandb=args.wandb)
        return run_in_dir(args.resume, algorithm, config, settings, resume=True, stop_grace=args.stop_grace)
    refuse_another_commands_config(args, lm=False)
    flags = {"num_seeds": args.seeds, "base_seed": args.seed}
    flags |= {name: getattr(args, name) for name in CHUNKING}
    flags |= {"tensorboard": args.tensorboard, "wandb": args.wandb}
    settings = RunSettings(**{name: value for name, value in flags.items() if value is not None})
    for name in ("field_demos", "field_expert"):  # bc's and dagger's: a resume from elsewhere still finds them
        if getattr(args, name, None):
            setattr(args, name, str(Path(getattr(args, name)).absolute()))
    if getattr(args, "field_demos", None) and getattr(args, "field_env", None) is None:
        args.field_env = load_demos(args.field_demos)[1]["env"]  # the demonstrations say the env
    config, note = control_config_from_args(args.algorithm, ALGORITHMS[args.algorithm].config_cls, args)
    if args.command == "sweep":
        settings = dataclasses.replace(settings, grid=parse_grid(config, args.grid))
    return run_in_dir(output_dir(args), args.algorithm, config, settings, stop_grace=args.stop_grace, note=note)


def refuse_another_commands_config(args: argparse.Namespace, lm: bool) -> None:
    """``--config`` of another command's run is refused in one line naming that command: the file's
    ``_algorithm`` (or, without one, this command's algorithm) names the algorithm, and its fields say which half
    (control and LM both have ``ppo`` and ``grpo``). A file whose fields fit no command is left to the usual
    errors."""
    config = getattr(args, "config", None)
    if config is None or not Path(config).is_file():
        return  # none, 'defaults', or missing: said where it is read
    values = load_config_values(config)
    name = values.get("_algorithm", args.algorithm)
    fields = {field for field in values if not field.startswith("_")}
    if not isinstance(name, str):
        return  # said by the config's reader
    halves = {"train": {n: a.config_cls for n, a in ALGORITHMS.items()}}
    halves["lm"] = {n: cls for n, (cls, _) in LM_COMMANDS.items()}
    homes = [half for half, cls in halves.items() if name in cls and fields <= set(field_types(cls[name]))]
    here = "lm" if lm else "train"
    if homes and (here, args.algorithm) not in [(half, name) for half in homes]:
        command = f"purerl {homes[0]} {name}"
        raise ValueError(f"--config {config} is a config of {command}, not of purerl {'lm' if lm else args.command} "
                         f"{args.algorithm}; use: {command} --config {config}")  # fmt: skip


def lm_command(args: argparse.Namespace) -> dict:
    algorithm = args.algorithm
    refuse_another_commands_config(args, lm=True)
    if algorithm == "pairs":
        return run_pairs(with_absolute_paths(config_from_args(PairsConfig, args)), output_dir(args))
    if args.resume is not None:
        refuse_settings_with_resume(args, ("out", "config"))
        if algorithm == "sft":
            return run_sft(load_sft_config(args.resume), args.resume, resume=True, stop_grace=args.stop_grace)
        config = load_method_config(algorithm, args.resume)
        return run_method(algorithm, config, args.resume, resume=True, stop_grace=args.stop_grace)
    config = with_absolute_paths(config_from_args(LM_COMMANDS[algorithm][0], args))
    if algorithm == "sft":
        return run_sft(config, output_dir(args), stop_grace=args.stop_grace)
    return run_method(algorithm, config, output_dir(args), stop_grace=args.stop_grace)


def print_lm_summary(summary: dict, out: Path) -> None:
    algorithm = summary["algorithm"]
    if algorithm == "pairs":
        print(f"wrote {out}/config.json, pairs.jsonl, summary.json")
        return
    print(f"\n{algorithm.upper()} on {summary['task']}: {summary['steps']} steps")
    start, end = summary["eval_at_start"], summary["eval"]
    for name in end:
        print(f"eval {name:20} {start[name]:+.3f} at step 0 -> {end[name]:+.3f}")
    rate = summary["tokens_per_second"]
    speed = "" if rate is None else f", {rate:,.0f} tokens/s"
    run = whole_run(summary["resumed_from_step"], summary["run_train_seconds"])
    print(f"compile {summary['compile_seconds']:.1f} s, train {summary['train_seconds']:.1f} s{speed} on "
          f"{summary['device']['kind']}{run}")  # fmt: skip
    print(f"wrote {out}/config.json, checkpoints/, metrics.csv, evals.csv, samples.txt, summary.json, {algorithm}.png")


def output_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "resume", None) is not None:
        return args.resume
    if args.out is not None:
        return args.out
    if args.command == "benchmark":
        return Path("runs") / ("compare" if args.compare else "benchmark")
    if args.command == "collect":
        return Path("runs") / "demos"
    return Path("runs") / args.algorithm


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = output_dir(args)
    try:
        check_stop_grace(getattr(args, "stop_grace", DEFAULT_STOP_GRACE))
        configure_compile_cache(args.compile_cache)
        if args.command == "lm":
            summary = lm_command(args)
        elif args.command == "benchmark" and args.compare:
            if args.compare[0] != "compare" or len(args.compare) != 3:
                raise ValueError(f"unexpected {' '.join(args.compare)!r}; to compare: compare DIR_A DIR_B --out DIR_C")
            summary = compare_benchmarks(Path(args.compare[1]), Path(args.compare[2]), out)
        elif args.command == "collect":
            summary = collect(args.run_dir, out, args.episodes, args.seed_index, args.greedy, args.seed)
        elif args.command == "benchmark":
            run_settings = {"tensorboard": args.tensorboard, "wandb": args.wandb}
            run_settings |= {name: getattr(args, name) for name in CHUNKING}
            summary = run_benchmark(
                args.algo, args.suite, args.seeds, out, args.budget, args.envs, args.stop_grace, args.seed,
                {name: value for name, value in run_settings.items() if value is not None},
            )  # fmt: skip
        else:
            summary = control_command(args)
    except (ValueError, CheckpointError) as error:
        parser.exit(2, f"purerl: error: {error}\n")
    except Interrupted as stop:
        resume_command = (
            "the same command"
            if args.command == "benchmark"
            else f"purerl {args.command} {args.algorithm} --resume {out}"
        )
        parser.exit(128 + stop.signum, f"purerl: {stop}\ncontinue with: {resume_command}\n")
    except NonFiniteError as error:
        parser.exit(1, f"purerl: stopped: {error}\n")
    except KeyboardInterrupt:
        parser.exit(130, "\npurerl: stopped at once; the newest checkpoint (if any) is kept\n")
    if not is_main_process():
        return 0
    if args.command == "lm":
        print_lm_summary(summary, out)
    elif args.command == "benchmark" and args.compare:
        print(f"wrote {out}/compare.md, compare.json, compare.png")
    elif args.command == "benchmark":
        print(
            f"wrote {out}/report.md, report.json, curves.png"
            + (", aggregate.png, profiles.png" if summary["aggregates"] else "")
        )
    elif args.command == "collect":
        pass  # collect said what it wrote
    elif args.command == "sweep":
        print_sweep_summary(summary, out)
    else:
        print_summary(summary, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
