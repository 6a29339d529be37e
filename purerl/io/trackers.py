"""Experiment trackers, each through its own library (optional extras), one tracker run per seed, with
CleanRL's metric names (``charts/episodic_return``, ``losses/value_loss``, ...) against ``global_step``, the
env steps of that seed:

- ``--tensorboard`` (``pip install 'purerl[tensorboard]'``, tensorboardX): event files under
  ``DIR/tensorboard/<run>/``, one per chunk, on disk before the chunk's checkpoint, so ``tensorboard --logdir
  DIR/tensorboard`` shows a run while it trains. Each file tells TensorBoard to drop what earlier files hold
  from its first step on, so the chunks a stopped session wrote after its last checkpoint (trained again by
  the resume) are shown once; a resume first rewrites the restored updates.
- ``--wandb`` (``pip install 'purerl[wandb]'``): Weights & Biases runs in offline mode (no network; upload later
  with ``wandb sync DIR/wandb/offline-run-*``; ``WANDB_MODE`` and ``WANDB_PROJECT`` are honoured) under
  ``DIR/wandb/``, written after the run's results, from its whole history, so a run stopped and resumed still
  gives one W&B run per seed. Grouped by the run directory, with the config and the seed.

Both add the final evaluation's mean return per seed as ``eval/episodic_return`` and leave out GRPO's updates
past a seed's env-step budget.
"""

import importlib.util
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from purerl.io.config_io import config_to_dict

TRACKERS = {"tensorboard": "tensorboardX", "wandb": "wandb"}  # flag -> the library that writes it (its extra)

# purerl's metric names -> CleanRL's (ppo.py, sac_continuous_action.py); the others go under charts/ with their own
# names.
CLEANRL_NAMES = {
    "episode_return": "charts/episodic_return",
    "episode_length": "charts/episodic_length",
    "learning_rate": "charts/learning_rate",
    "loss": "losses/loss",
    "policy_loss": "losses/policy_loss",
    "value_loss": "losses/value_loss",
    "entropy": "losses/entropy",
    "approx_kl": "losses/approx_kl",  # both k3, (r - 1) - log r (Schulman 2020)
    "approx_kl_k1": "losses/old_approx_kl",  # both k1, -log r
    "clip_fraction": "losses/clipfrac",
    "explained_variance": "losses/explained_variance",
    # SAC (CleanRL's sac_continuous_action.py)
    "q_loss": "losses/qf_loss",
    "q_value": "losses/qf_values",
    "actor_loss": "losses/actor_loss",
    "alpha": "losses/alpha",
    "alpha_loss": "losses/alpha_loss",
}
STEP_METRIC = "env_steps"  # the x axis (CleanRL's global_step), not logged as a scalar of its own
# GRPO's 1/0 per update: 0 when a seed is past its env-step budget and the update changed nothing (its
# env steps do not advance either); such updates are left out, the flag itself too.
TRAINED_METRIC = "training"
WANDB_MODES = ("offline", "online", "disabled")
EVAL_NAME = "eval/episodic_return"
WANDB_WRITTEN = Path("wandb") / "purerl_written.json"  # in the run directory, once every W&B run is written


def tracker_name(metric: str) -> str:
    return CLEANRL_NAMES.get(metric, f"charts/{metric}")


def wandb_mode() -> str:
    return os.environ.get("WANDB_MODE", "offline")


def check_trackers(names: tuple[str, ...]) -> None:
    """One-line ``ValueError`` for a tracker whose extra is not installed, or a ``WANDB_MODE`` W&B has not."""
    for name in names:
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ValueError(f"--{name} needs {TRACKERS[name]}: pip install 'purerl[{name}]'")
    if "wandb" in names and wandb_mode() not in WANDB_MODES:
        raise ValueError(f"--wandb: WANDB_MODE={wandb_mode()!r}; choose one of {', '.join(WANDB_MODES)}")


class Trackers:
    """The trackers of one run directory: ``log_chunk`` after every chunk (TensorBoard), ``finish`` with the
    finished run's results (W&B; TensorBoard's eval scalars).

    ``run_names[r]`` names run ``r`` (``seed_3``, or ``<point>/seed_3`` in a sweep); ``run_config[r]`` is what
    W&B records as run ``r``'s config besides the algorithm's (its seed, its sweep point's values)."""

    def __init__(
        self,
        names: tuple[str, ...],
        out: Path,
        algorithm: str,
        config: Any,
        run_names: list[str],
        run_config: list[dict[str, Any]],
    ):
        check_trackers(names)
        self.names, self.out, self.algorithm, self.config = names, out, algorithm, config
        self.run_names, self.run_config = run_names, run_config

    def log_chunk(self, first_update: int, metrics: dict[str, np.ndarray]) -> None:
        """``metrics``: name -> ``[runs, updates]`` of updates ``first_update, first_update + 1, ...``.

        Each chunk goes to event files of its own, closed before this returns: tensorboardX writes from a
        thread and its ``flush`` does not wait for it, so only ``close`` makes the chunk safe on disk before
        the chunk's checkpoint. Each file starts with a purge at its first step: TensorBoard drops what a
        stopped session wrote from there on (the chunks after its last checkpoint, trained again)."""
        if "tensorboard" in self.names:
            for r, name in enumerate(self.run_names):
                rows = list(update_rows(metrics, r, first_update))
                if rows:  # none: every update of the chunk past the seed's budget
                    self.write_tensorboard(name, rows[0][0], f"update_{first_update:09d}", rows)

    def write_tensorboard(
        self, run: str, purge_step: int | None, suffix: str, rows: Iterable[tuple[int, dict[str, float]]]
    ) -> None:
        from tensorboardX import SummaryWriter

        # The zero-padded suffix orders files written within the same second (names start with the time, then
        # the host): a chunk's after the chunks before it, the evaluation's after the last chunk's.
        writer = SummaryWriter(str(self.out / "tensorboard" / run), purge_step=purge_step, filename_suffix=f".{suffix}")
        try:
            for step, row in rows:
                for name, value in row.items():
                    writer.add_scalar(name, value, global_step=step)
        finally:
            writer.close()

    def finish(self, metrics: dict[str, np.ndarray], eval_returns: np.ndarray) -> None:
        """The finished run: ``metrics`` its whole history (name -> ``[runs, updates]``), ``eval_returns``
        ``[runs, episodes]`` of the final evaluation. W&B's runs are written once: ``WANDB_WRITTEN`` records
        that all were, so a finished run resumed (to evaluate it again) does not write them twice, while one
        whose writing failed or was stopped writes them at its resume."""
        eval_means = eval_returns.mean(axis=1)
        if "tensorboard" in self.names:
            final_steps = [global_steps(steps)[-1] for steps in metrics[STEP_METRIC]]
            num_updates = metrics[STEP_METRIC].shape[1]
            for r, name in enumerate(self.run_names):
                row = [(int(final_steps[r]), {EVAL_NAME: float(eval_means[r])})]
                self.write_tensorboard(name, None, f"update_{num_updates:09d}_eval", row)
            where = self.out / "tensorboard"
            print(f"TensorBoard: {len(self.run_names)} runs in {where} (tensorboard --logdir {where})", file=sys.stderr)
        if "wandb" in self.names:
            self.finish_wandb(metrics, eval_means)

    def finish_wandb(self, metrics: dict[str, np.ndarray], eval_means: np.ndarray) -> None:
        written = self.out / WANDB_WRITTEN
        if wandb_mode() == "disabled":
            print("W&B: disabled (WANDB_MODE=disabled); nothing written", file=sys.stderr)
        elif written.exists():
            print(f"W&B: the runs are in {written.parent} already; not written again", file=sys.stderr)
        else:
            try:
                self.write_wandb(metrics, eval_means)
            except Exception as error:  # the results are saved already; W&B's failure (no login, say) ends here
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                print(f"W&B: could not write the runs ({first_line}); metrics.csv has every metric, and --resume "
                      f"{self.out} writes them", file=sys.stderr)  # fmt: skip
                return
            written.write_text(json.dumps({"mode": wandb_mode(), "runs": self.run_names}, indent=2) + "\n")
            upload = f" (upload: wandb sync {written.parent}/offline-run-*)" if wandb_mode() == "offline" else ""
            print(f"W&B: {len(self.run_names)} {wandb_mode()} runs in {written.parent}{upload}", file=sys.stderr)

    def write_wandb(self, metrics: dict[str, np.ndarray], eval_means: np.ndarray) -> None:
        import wandb

        group = str(self.out)
        base = {"algorithm": self.algorithm} | config_to_dict(self.config)
        print(f"writing {len(self.run_names)} W&B runs ...", file=sys.stderr, flush=True)
        for r, name in enumerate(self.run_names):
            run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "purerl"),
                mode=wandb_mode(),
                dir=str(self.out),
                group=group,
                name=f"{group}/{name}",
                job_type=self.algorithm,
                config=base | self.run_config[r],
                tags=[self.algorithm, self.config.env],
                reinit="create_new",
                settings=wandb.Settings(silent=True, console="off", save_code=False, x_disable_stats=True),
            )
            try:
                run.define_metric("*", step_metric="global_step")  # W&B's x axis: env steps, as TensorBoard's
                rows = list(update_rows(metrics, r))
                for step, row in rows:
                    run.log(row | {"global_step": step}, step=step)
                final = rows[-1][0] if rows else 0
                run.log({EVAL_NAME: float(eval_means[r]), "global_step": final}, step=final)  # into the last row
            finally:
                run.finish()
        # run.finish() returns before W&B's service has written the run's last 32 KiB block (a run read right
        # after it lacked its last rows, 1 time in 12); teardown waits for the service. Not while another run
        # of this process is open: teardown would finish it too.
        if wandb.run is None:
            wandb.teardown()


def global_steps(env_steps: np.ndarray, first_update: int = 0) -> np.ndarray:
    """The x axis of one run's updates ``first_update, first_update + 1, ...``: their env steps (CleanRL's
    global_step), or, for a method that takes none (behavioural cloning), the updates done, so that its points
    do not all land on step 0 (where TensorBoard keeps only the newest)."""
    return env_steps if env_steps.any() else np.arange(first_update + 1, first_update + 1 + len(env_steps))


def update_rows(
    metrics: dict[str, np.ndarray], run: int, first_update: int = 0
) -> Iterator[tuple[int, dict[str, float]]]:
    """``(global step, {tracker name: value})`` of run ``run``, one per update that trained (``TRAINED_METRIC``);
    NaNs (no episode finished in that update) are left out, as CleanRL logs returns only when an episode ends."""
    names = [name for name in sorted(metrics) if name not in (STEP_METRIC, TRAINED_METRIC)]
    values = np.stack([metrics[name][run] for name in names], axis=1).astype(np.float64)  # [updates, names]
    trained = metrics[TRAINED_METRIC][run] if TRAINED_METRIC in metrics else np.ones(values.shape[0])
    steps = global_steps(metrics[STEP_METRIC][run], first_update)
    for step, row, update_trained in zip(steps.tolist(), values.tolist(), trained, strict=True):
        if update_trained:
            finite = {tracker_name(n): value for n, value in zip(names, row, strict=True) if np.isfinite(value)}
            yield int(step), finite
