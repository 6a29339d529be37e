"""The runs the language-model experiments share, one seed at a time: SFT, preference pairs, reward models and
policies, each a ``purerl lm`` run directory under ``runs/lm_pipeline/seed_<s>/`` (not committed).

A finished run is read back (its ``summary.json``), one stopped part-way resumes from its checkpoint, so every
script that uses this resumes where it stopped, and the experiments share their SFT runs, pairs and reward
models: the same seed's runs are the same runs.
"""

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from purerl.core.stats import format_iqm_ci, summarize_runs
from purerl.io.config_io import config_from_dict, config_to_dict, load_config_values
from purerl.io.lm_align import run_method, run_pairs
from purerl.io.lm_sft import run_sft
from purerl.lm.dpo import DPOConfig
from purerl.lm.grpo import LMGRPOConfig
from purerl.lm.ppo import LMPPOConfig
from purerl.lm.preference_data import PairsConfig
from purerl.lm.reward_model import RewardModelConfig
from purerl.lm.sft import SFTConfig

WORK = Path("runs/lm_pipeline")
LOG = sys.stderr  # the runs' progress; the scripts print one line per finished run to stdout
SFT_STEPS = {"sentiment": 1000, "palindrome": 600, "reverse": 1500}
RL_STEPS = 60
POLICY_CONFIGS = {
    "ppo": (LMPPOConfig, {}),
    "grpo": (LMGRPOConfig, {"prompts_per_step": 8, "group_size": 8}),  # PPO's 64 completions per rollout
    "dpo": (DPOConfig, {}),
}


def finished(out: Path, config: Any, fields: dict[str, Any], run: Callable[[bool], Any]) -> dict:
    """``out``'s summary, after ``run(resume)`` unless the run already finished: a run stopped part-way
    resumes from its checkpoint. The ``fields`` the experiment sets must match the saved run's (a directory
    holding another setting is an error); the other fields are the defaults of when the run was made, which
    its ``config.json`` records."""
    saved = out / "config.json"
    if saved.exists():
        values = config_to_dict(config_from_dict(type(config), load_config_values(saved)))
        differ = sorted(name for name in fields if values[name] != getattr(config, name))
        if differ:
            raise ValueError(f"{out} holds a run with other {', '.join(differ)}; move it away")
    summary = out / "summary.json"
    if not summary.exists():
        run((out / "checkpoints").exists())
    return json.loads(summary.read_text())


class Seed:
    """One seed's runs on one task: ``work/seed_<s>/`` for sentiment, ``work/<task>/seed_<s>/`` otherwise."""

    def __init__(self, task: str, seed: int, work: Path = WORK):
        self.task, self.seed = task, seed
        self.root = work / f"seed_{seed}" if task == "sentiment" else work / task / f"seed_{seed}"

    @property
    def sft(self) -> str:
        """The SFT run (``SFT_STEPS[task]`` steps), trained on first use."""
        out = self.root / "sft"
        fields = {"task": self.task, "steps": SFT_STEPS[self.task], "seed": self.seed}
        config = SFTConfig(**fields)
        finished(out, config, fields, lambda resume: run_sft(config, out, resume, stream=LOG))
        return str(out)

    def pairs(self, name: str, prompts: int = 512, **fields) -> str:
        """Preference pairs from the SFT policy (or ``policy=RUN``), labelled by the task's reward."""
        out = self.root / name
        fields = {"init": self.sft, "prompts": prompts, "seed": self.seed} | fields
        config = PairsConfig(**fields)
        finished(out, config, fields, lambda resume: run_pairs(config, out, stream=LOG))
        return str(out)

    def reward_model(self, name: str, pairs: tuple[str, ...], member: int = 0, **fields) -> str:
        """A reward model (200 steps of 32 pairs, ``fields`` over those settings) on ``pairs``, seed
        ``100 seed + member``."""
        out = self.root / name
        fields = {"init": self.sft, "pairs": pairs, "steps": 200, "seed": 100 * self.seed + member} | fields
        config = RewardModelConfig(**fields)
        finished(out, config, fields, lambda resume: run_method("rm", config, out, resume, stream=LOG))
        return str(out)

    def policy(self, algorithm: str, name: str, **fields) -> dict:
        """PPO or GRPO (``RL_STEPS`` rollouts of 64 completions, 3 evaluations) or DPO from the SFT policy,
        with ``fields`` over those settings; returns its summary."""
        config_cls, shape = POLICY_CONFIGS[algorithm]
        settings = {} if algorithm == "dpo" else {"steps": RL_STEPS, "eval_every": RL_STEPS // 3}
        fields = {"init": self.sft, "seed": self.seed} | shape | settings | fields
        config = config_cls(**fields)
        out = self.root / f"{algorithm}_{name}"
        summary = finished(out, config, fields, lambda resume: run_method(algorithm, config, out, resume, stream=LOG))
        print(f"{self.task} seed {self.seed} {algorithm} {name}: {json.dumps(summary['eval'])}", flush=True)
        return summary


def iqm_ci(values: list[float], digits: int = 2) -> str:
    """``IQM [low, high]`` over seeds with rliable's 95% stratified-bootstrap interval, the statistic of every
    purerl table (with 3 seeds the IQM is the mean, and the interval spans little more than their range)."""
    stats = summarize_runs(values)
    return format_iqm_ci(stats["iqm"], stats["iqm_ci_low"], stats["iqm_ci_high"], digits)


def final_samples(run: Path) -> list[str]:
    """The samples the run printed at its last evaluation."""
    lines = (run / "samples.txt").read_text().splitlines()
    last = lines[-1].split("\t")[0]
    return [line.split("\t", 1)[1] for line in lines if line.split("\t")[0] == last]
