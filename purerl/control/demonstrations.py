"""Expert demonstrations: their format on disk (``purerl collect`` writes it, ``purerl.io.collect``), and reading
them back (``purerl train bc``).

A demonstration directory holds two files that load without purerl (numpy and JSON):

    demos.npz   the steps of whole episodes, episode after episode, each in time order:
        observations        float32 [N, obs_dim]  the env's raw observations (before the expert's own
                            normalisation by its run's frozen statistics)
        actions             int32 [N] (discrete) or float32 [N, A] (continuous): the actions executed,
                            clipped to the action box
        rewards             float32 [N]
        episode             int32 [N]  the step's episode, 0..E-1
        episode_returns     float32 [E]    episode_lengths  int32 [E]
        episode_terminated  bool [E]   the episode ended by termination, not by its time limit
        episode_seeds       int32 [E]  the expert seed that played it (seed i of the run)
    demos.json  the env, the expert (algorithm, run directory, seeds, greedy or sampled actions), the counts,
                obs_dim, action_dim, discrete, the command, the date and the versions.

    import numpy as np
    demos = np.load("DIR/demos.npz")
    first_episode = demos["observations"][demos["episode"] == 0]
"""

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from purerl.core.files import file_stamps

ARRAYS_FILE, META_FILE = "demos.npz", "demos.json"
STEP_ARRAYS = ("observations", "actions", "rewards", "episode")
EPISODE_ARRAYS = ("episode_returns", "episode_lengths", "episode_terminated", "episode_seeds")


def flatten_episodes(played: dict[str, np.ndarray], seeds: np.ndarray, discrete: bool) -> dict[str, np.ndarray]:
    """``play_episodes``' time-major recordings of every seed (``[S, T, E, ...]``, vmapped over seeds) as the
    format's flat arrays: episode ``s * E + e`` is env ``e`` of seed ``seeds[s]``, its active steps in order."""
    num_seeds, _, per_seed = played["active"].shape
    episode_major = {name: np.swapaxes(played[name], 1, 2) for name in ("observations", "actions", "rewards", "active")}
    active = episode_major["active"].reshape(-1, episode_major["active"].shape[-1])  # [S * E, T]
    steps = {name: episode_major[name].reshape(active.shape + episode_major[name].shape[3:])[active]
             for name in ("observations", "actions", "rewards")}  # fmt: skip
    lengths = active.sum(axis=1)
    return {
        "observations": steps["observations"].astype(np.float32),
        "actions": steps["actions"].astype(np.int32 if discrete else np.float32),
        "rewards": steps["rewards"].astype(np.float32),
        "episode": np.repeat(np.arange(num_seeds * per_seed, dtype=np.int32), lengths),
        "episode_returns": played["returns"].reshape(-1).astype(np.float32),
        "episode_lengths": lengths.astype(np.int32),
        "episode_terminated": played["terminated"].reshape(-1),
        "episode_seeds": np.repeat(seeds.astype(np.int32), per_seed),
    }


def load_demos(directory: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)`` of a demonstration directory, read once per process while its files are unchanged
    (a collect into the same directory, or an edit, is read again: a run's inputs are hashed from the files, so
    the arrays it trains on must be theirs); a one-line ``ValueError`` if it is not one. The message names the
    directory, not a flag: a resumed run reads the one its config names."""
    return _read_demos(directory, file_stamps(Path(directory) / META_FILE, Path(directory) / ARRAYS_FILE))


@cache
def _read_demos(directory: str, stamps: tuple) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    path = Path(directory)
    try:
        meta = json.loads((path / META_FILE).read_text())
        with np.load(path / ARRAYS_FILE) as stored:
            arrays = {name: stored[name] for name in STEP_ARRAYS + EPISODE_ARRAYS}
        missing = [name for name in ("env", "episodes") if name not in meta]
        if missing:
            raise KeyError(f"{META_FILE} lacks {', '.join(missing)}")
    except (OSError, ValueError, KeyError, TypeError) as error:
        if "allow_pickle" in str(error):  # numpy's message would invite the user to unpickle untrusted data
            error = f"{ARRAYS_FILE} holds Python objects, which purerl never writes and does not unpickle"
        raise ValueError(f"{directory!r} is not a demonstration directory (purerl collect): {error}") from None
    return arrays, meta
