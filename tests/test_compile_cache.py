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


def directory(flag: str | None) -> Path | None:
    return cache_directory(flag)[0]


def test_directory_precedence_flag_then_purerl_then_jax_then_the_user_cache(clean_env, tmp_path):
    assert cache_directory(None) == (Path.home() / ".cache" / "purerl" / "jax", "the compile cache")
    assert directory(None) == default_directory()
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert directory(None) == tmp_path / "xdg" / "purerl" / "jax"
    clean_env.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert cache_directory(None) == (tmp_path / "jax", "JAX_COMPILATION_CACHE_DIR")
    clean_env.setenv("PURERL_COMPILE_CACHE", str(tmp_path / "env"))
    assert cache_directory(None) == (tmp_path / "env", "PURERL_COMPILE_CACHE")
    assert cache_directory(str(tmp_path / "flag")) == (tmp_path / "flag", "--compile-cache")
    clean_env.setenv("PURERL_COMPILE_CACHE", "OFF")
    assert directory(None) is None
    assert directory("off") is None
    assert directory(str(tmp_path / "flag")) == tmp_path / "flag"  # the flag wins over the variable


@pytest.mark.parametrize("source", ["flag", "env"])
def test_empty_directory_is_a_one_line_error(clean_env, source):
    if source == "env":
        clean_env.setenv("PURERL_COMPILE_CACHE", " ")
    with pytest.raises(ValueError, match="PURERL_COMPILE_CACHE is empty" if source == "env" else "--compile-cache"):
        cache_directory("" if source == "flag" else None)


@pytest.mark.parametrize(
    "where, message",
    [
        ("file", r"--compile-cache '.*file' is not a directory; give another with --compile-cache DIR"),
        ("file/jax", r"--compile-cache '.*file/jax' is not writable: Not a directory; give another"),
        ("/proc", r"--compile-cache '/proc' is not writable: "),  # exists, not writable
    ],
)
def test_a_directory_purerl_cannot_write_is_a_one_line_error(tmp_path, where, message):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=message):
        configure_compile_cache(where if where.startswith("/") else str(tmp_path / where))


def test_the_error_names_the_variable_the_directory_came_from(clean_env, tmp_path):
    (tmp_path / "file").write_text("")
    clean_env.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "file" / "x"))
    with pytest.raises(ValueError, match=r"JAX_COMPILATION_CACHE_DIR '.*file/x' is not writable"):
        configure_compile_cache(None)


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
