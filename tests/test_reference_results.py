"""Fixed-seed PPO, GRPO, a PPO sweep and LM SFT -> GRPO through the command line reproduce every metric that
was recorded before the refactors that were meant to change no number (``tests/reference_results.py``)."""

import json

import numpy as np
from reference_results import RECORDED, environment, run_all


def test_fixed_seed_runs_reproduce_the_recorded_metrics(tmp_path):
    """Bitwise where jax, jaxlib and the platform are those of the recording; elsewhere to float rounding."""
    recorded = json.loads(RECORDED.read_text())
    results = run_all(tmp_path)
    exact = environment() == recorded["environment"]
    assert results.keys() == recorded["runs"].keys()
    for run, columns in recorded["runs"].items():
        assert results[run].keys() == columns.keys(), run
        for name, values in columns.items():
            if exact:
                np.testing.assert_array_equal(results[run][name], values, err_msg=f"{run}: {name}")
            else:
                np.testing.assert_allclose(results[run][name], values, rtol=1e-5, atol=1e-6, err_msg=f"{run}: {name}")
