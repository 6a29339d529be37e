"""``purerl collect``: expert demonstrations from the final policies of a finished run, in the format of
``purerl.control.demonstrations``."""

import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np

from purerl.control.demonstrations import ARRAYS_FILE, EPISODE_ARRAYS, META_FILE, STEP_ARRAYS, flatten_episodes
from purerl.control.envs import env_spec, vec_env
from purerl.control.evaluation import play_episodes
from purerl.io.checkpoints import check_writable
from purerl.io.run import ALGORITHMS, environment_info
from purerl.io.run_dir import load_trained_state


def collect(
    run_dir: Path, out: Path, episodes: int, seeds: list[int] | None = None, greedy: bool = False, seed: int = 0
) -> dict[str, Any]:
    """Plays ``episodes`` whole episodes with the final policies of the finished run in ``run_dir`` (its
    ``seeds``, default all, an equal share each), actions sampled (or the mode if ``greedy``) with keys from
    ``jax.random.key(seed)``, and writes them to ``out``; returns the metadata. One-line ``ValueError`` for a
    run that cannot serve (unfinished, a sweep), a seed it lacks or a count that does not split evenly."""
    algorithm, config, settings, states = load_trained_state(run_dir)
    seeds = list(range(settings.num_seeds)) if seeds is None else seeds
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"--seed-index names a seed twice: {' '.join(map(str, seeds))}")
    outside = [s for s in seeds if not 0 <= s < settings.num_seeds]
    if outside:
        raise ValueError(f"--seed-index {outside[0]}: the run has seeds 0..{settings.num_seeds - 1}")
    if episodes <= 0 or episodes % len(seeds):
        raise ValueError(f"--episodes must be a positive multiple of the {len(seeds)} expert seed(s), got {episodes}")
    spec = env_spec(config.env)
    if spec.max_steps_in_episode is None:
        raise ValueError(f"{config.env} sets no time limit, so an episode may never end; purerl cannot collect it")
    check_writable(out)
    if (out / ARRAYS_FILE).exists():
        raise ValueError(f"--out {str(out)!r} already holds demonstrations; use another --out")
    per_seed = episodes // len(seeds)
    box = None if spec.discrete else (spec.action_low, spec.action_high)

    def play(state: Any, key: jax.Array) -> dict[str, jax.Array]:
        policy = partial(ALGORITHMS[algorithm].policy, state)
        env = vec_env(config.env, per_seed)
        return play_episodes(policy, env, key, spec.max_steps_in_episode, greedy, record=True, action_box=box)

    chosen = jax.tree.map(lambda x: x[np.asarray(seeds)], states)
    keys = jax.vmap(partial(jax.random.fold_in, jax.random.key(seed)))(np.asarray(seeds))
    print(f"collecting {episodes} episodes of {config.env} from {len(seeds)} seed(s) of {run_dir} ...", file=sys.stderr)
    played = jax.tree.map(np.asarray, jax.jit(jax.vmap(play))(chosen, keys))
    arrays = flatten_episodes(played, np.asarray(seeds), spec.discrete)
    meta = {
        "env": config.env,
        "expert": {"algorithm": algorithm, "run_dir": str(Path(run_dir).absolute()), "seeds": seeds, "greedy": greedy},
        "episodes": episodes,
        "steps": int(arrays["observations"].shape[0]),
        "obs_dim": spec.obs_dim,
        "action_dim": spec.action_dim,
        "discrete": spec.discrete,
        "mean_return": float(arrays["episode_returns"].mean()),
        "command": f"purerl collect --from {run_dir} --episodes {episodes} --out {out} --seed {seed}"
        + "".join(f" --seed-index {s}" for s in seeds)
        + (" --greedy" if greedy else ""),
        "format": "demos.npz: " + ", ".join(STEP_ARRAYS + EPISODE_ARRAYS) + " (purerl.control.demonstrations)",
    } | environment_info()
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / ARRAYS_FILE, **arrays)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out}/{ARRAYS_FILE} and {META_FILE}: {meta['steps']:,} steps, mean return "
          f"{meta['mean_return']:.1f}", file=sys.stderr)  # fmt: skip
    return meta
