"""The safe XLA default is applied on import and never overrides a user's own choice."""

import os

from purerl._xla_defaults import apply_safe_xla_defaults

FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"


def test_flag_added_to_existing_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    apply_safe_xla_defaults()
    assert os.environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {FLAG}=false"


def test_user_choice_is_kept(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", f"{FLAG}=true")
    apply_safe_xla_defaults()
    assert os.environ["XLA_FLAGS"] == f"{FLAG}=true"


def test_applied_in_this_process():
    assert f"{FLAG}=false" in os.environ["XLA_FLAGS"]
