"""Every script under ``benchmarks/`` and ``experiments/`` imports: a name purerl renames breaks a script only when
someone runs it, maybe on a lent GPU (``benchmarks/ppo_throughput.py`` imported a function renamed in 3d3e0e4, so
``benchmarks/gpu_figures.sh`` would have stopped at its first part)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(
    path.relative_to(ROOT) for folder in ("benchmarks", "experiments") for path in (ROOT / folder).rglob("*.py")
)
NEEDS = {Path("benchmarks/sb3_ppo.py"): "stable_baselines3"}  # run from its own venv (benchmarks/README.md)


def test_the_scripts_are_found():
    assert Path("benchmarks/ppo_throughput.py") in SCRIPTS and Path("experiments/sac/study.py") in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=str)
def test_a_script_imports(script, monkeypatch):
    if script in NEEDS and importlib.util.find_spec(NEEDS[script]) is None:
        pytest.skip(f"{script} needs {NEEDS[script]}")
    monkeypatch.syspath_prepend(str(ROOT / script.parent))  # its sibling modules, as `python script` sees them
    spec = importlib.util.spec_from_file_location(f"script_{'_'.join(script.with_suffix('').parts)}", ROOT / script)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # runs its imports; main() stays behind __main__
