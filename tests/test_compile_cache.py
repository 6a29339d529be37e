"""The ``purerl`` command's persistent compilation cache: where it is, how it is turned off, and that a second
run of the same command compiles nothing (every program, the training chunks included, is loaded)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from purerl.io.compile_cache import cache_directory, configure_compile_cache, default_directory


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("PURERL_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_directory_precedence_flag_then_purerl_then_jax_then_the_user_cache(clean_env, tmp_path):
    assert cache_directory(None) == Path.home() / ".cache" / "purerl" / "jax" == default_directory()
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_directory(None) == tmp_path / "xdg" / "purerl" / "jax"
    clean_env.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert cache_directory(None) == tmp_path / "jax"
    clean_env.setenv("PURERL_COMPILE_CACHE", str(tmp_path / "env"))
    assert cache_directory(None) == tmp_path / "env"
    assert cache_directory(str(tmp_path / "flag")) == tmp_path / "flag"
    clean_env.setenv("PURERL_COMPILE_CACHE", "OFF")
    assert cache_directory(None) is None
    assert cache_directory("off") is None
    assert cache_directory(str(tmp_path / "flag")) == tmp_path / "flag"  # the flag wins over the variable


@pytest.mark.parametrize("source", ["flag", "env"])
def test_empty_directory_is_a_one_line_error(clean_env, source):
    if source == "env":
        clean_env.setenv("PURERL_COMPILE_CACHE", " ")
    with pytest.raises(ValueError, match="PURERL_COMPILE_CACHE is empty" if source == "env" else "--compile-cache"):
        cache_directory("" if source == "flag" else None)


def test_a_directory_that_cannot_be_created_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"compile cache .*file/jax cannot be created \(Not a directory\)"):
        configure_compile_cache(str(tmp_path / "file" / "jax"))


def entries(directory: Path) -> set[str]:
    return {path.name for path in directory.glob("*-cache")}


def train(out: Path, cache: Path) -> dict:
    command = [sys.executable, "-m", "purerl.io.launch", "train", "ppo", "--seeds", "2", "--num-envs", "4"]
    command += ["--num-steps", "16", "--total-timesteps", "192", "--chunk-updates", "2", "--eval-episodes", "2"]
    command += ["--out", str(out), "--compile-cache", str(cache)]
    env = os.environ | {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # keep even the fastest compiles
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


@pytest.mark.timeout(480)
def test_second_run_of_a_command_loads_every_program_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    train(tmp_path / "first", cache)
    stored = entries(cache)
    assert any(name.startswith("jit_run_chunk") for name in stored), stored  # the chunks hold no host callback
    train(tmp_path / "second", cache)
    assert entries(cache) == stored  # nothing compiled again: every program came from the cache
