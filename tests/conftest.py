"""Test-session setup, before JAX starts, and what the tests share.

- One persistent compilation cache for the whole session, in a fresh temporary directory: the pytest-xdist
  workers and the CLI subprocesses that tests start inherit it through the environment, so a program one of
  them compiled is loaded, not compiled again, by the next (JAX never caches programs that hold host
  callbacks, such as the progress bar's). Fresh per session, so no test sees a program from another version.
- On a GPU, workers share the device: none preallocates most of its memory.
- Importing purerl first applies its safe XLA defaults before any JAX backend starts.
- Expensive runs that several tests read are fixtures whose tests share an ``xdist_group``, so that one
  worker builds each once (``--dist loadgroup``, pyproject.toml).
"""

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # cache short compiles too
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="purerl-tests-jax-cache-")
    os.environ["PURERL_TESTS_OWN_CACHE"] = "1"

import pytest  # noqa: E402

import purerl  # noqa: E402, F401
from purerl.io import cli  # noqa: E402
from purerl.io.lm_sft import run_sft  # noqa: E402
from purerl.lm.sft import SFTConfig  # noqa: E402

# Shared runs that tests build as fixtures (session or module scope). pytest-timeout counts a fixture's setup in
# the timeout of the test that happens to build it, which the scheduling decides, so every test that uses one
# gets SHARED_RUN_SECONDS more per such fixture: on the CI's 2-core AVX2 EPYC sentiment_sft took 243 s to build
# and its first test timed out at 300 s, and the sharding runs took 300 s.
SHARED_RUNS = {"sentiment_sft", "cartpole_expert", "lm_runs", "one_device_run", "four_device_run", "uninterrupted",
               "start", "demos"}  # fmt: skip
SHARED_RUN_SECONDS = 300.0


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        shared = SHARED_RUNS.intersection(getattr(item, "fixturenames", ()))
        if shared:
            marker = item.get_closest_marker("timeout")
            own = float(marker.args[0]) if marker and marker.args else float(config.getini("timeout"))
            # first, so that it is the closest marker pytest-timeout reads
            item.add_marker(pytest.mark.timeout(own + SHARED_RUN_SECONDS * len(shared)), append=False)


def pytest_sessionfinish(session, exitstatus) -> None:
    """The session's owner (the xdist controller, or pytest alone) removes the cache it created."""
    if os.environ.get("PURERL_TESTS_OWN_CACHE") and not hasattr(session.config, "workerinput"):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def sentiment_sft(tmp_path_factory) -> Path:
    """The SFT run the LM learning tests start from (300 steps on sentiment); its tests are in the xdist group
    ``sentiment_sft``."""
    out = tmp_path_factory.mktemp("lm") / "sft"
    run_sft(SFTConfig(task="sentiment", steps=300, eval_every=300), out)
    return out


@pytest.fixture(scope="session")
def cartpole_expert(tmp_path_factory) -> tuple[Path, Path]:
    """A PPO expert on CartPole (2 seeds of the tuned config at its 150k env steps: each returns 500) and 8 of
    its episodes collected (``purerl collect``): ``(run_dir, demos_dir)``. Its tests are in the xdist group
    ``cartpole_expert``."""
    root = tmp_path_factory.mktemp("expert")
    expert, demos = root / "expert", root / "demos"
    assert cli.main(["train", "ppo", "--env", "CartPole-v1", "--seeds", "2", "--eval-episodes", "8",
                     "--out", str(expert)]) == 0  # fmt: skip
    assert cli.main(["collect", "--from", str(expert), "--episodes", "8", "--out", str(demos)]) == 0
    return expert, demos
