"""The installed dependency set is whole: whatever a direct dependency imports when it is imported is declared
by that dependency (through its own requirements) or by purerl. gymnax 1.0 imports ``six`` without declaring
it; a fresh install lost it when another package stopped pulling it in."""

import json
import re
import subprocess
import sys
from importlib import metadata

import pytest
from packaging.requirements import Requirement

# The module purerl imports from a direct dependency whose name is not the distribution's.
MODULE = {"orbax-checkpoint": "orbax.checkpoint"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(distribution: str) -> set[str]:
    """Names a distribution requires on this interpreter, extras left out."""
    names = set()
    for line in metadata.requires(distribution) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.add(canonical(requirement.name))
    return names


def closure(roots: set[str]) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            try:
                todo.extend(requirements(name) - seen)
            except metadata.PackageNotFoundError:
                pass  # an optional requirement that is not installed: nothing below it was imported
    return seen


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def modules_loaded_by(module: str) -> set[str]:
    """Third-party top-level modules that ``import module`` loads in a fresh interpreter."""
    run = run_python(f"import sys, json, {module}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))")
    return {top for top in json.loads(run.stdout) if top not in sys.stdlib_module_names and not top.startswith("_")}


def hard_import_among(module: str, candidates: set[str]) -> str | None:
    """The candidate whose absence makes ``import module`` fail (None if all are optional imports): the
    candidates are made unimportable, as on a machine that lacks them."""
    block = "".join(f"sys.modules[{name!r}] = None; " for name in sorted(candidates))
    run = run_python(f"import sys; {block}\ntry:\n    import {module}\nexcept ImportError as e:\n    print(e.name)")
    name = run.stdout.strip()
    return name.split(".")[0] if name else None


@pytest.mark.parametrize("distribution", sorted(requirements("purerl")))
def test_what_a_dependency_imports_is_declared_by_it_or_by_purerl(distribution):
    """A module that ``import <dependency>`` cannot do without must belong to a distribution in that
    dependency's own requirement closure, or one purerl declares itself: another package's requirements are
    not a promise. Modules a dependency imports only if present (``try: import ...``) are left out."""
    declared = requirements("purerl")
    assert canonical(distribution) in declared
    covered = closure({canonical(distribution)}) | declared
    owners = metadata.packages_distributions()
    module = MODULE.get(distribution, distribution.replace("-", "_"))
    candidates = {
        top
        for top in modules_loaded_by(module)
        if top in owners and not {canonical(dist) for dist in owners[top]} & covered
    }
    missing = hard_import_among(module, candidates) if candidates else None
    assert missing is None, f"import {module} needs {missing!r}, declared by neither {distribution} nor purerl"
