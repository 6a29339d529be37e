"""Which config a control command starts from: the env's tuned config when purerl ships one, PureJaxRL's generic
defaults by name, or a file.

- ``--config FILE``: that file; ``--config defaults``: the config class's defaults (PureJaxRL's generic PPO
  settings, whatever the env);
- neither: the tuned config of ``--env`` (or of the default env) from ``purerl/configs/<algorithm>/<env>.json``,
  budget included, announced in one line; the class's defaults where none is shipped.

Explicit flags override every field either way.
"""

import argparse
from importlib import resources
from pathlib import Path
from typing import Any

from purerl.io.config_io import config_from_dict, load_config_values, parse_value
from purerl.io.config_io import field_types as field_types
from purerl.io.run import title

DEFAULTS = "defaults"  # --config defaults: the config class's own defaults


def tuned_config_path(algorithm: str, env: str) -> Path | None:
    """The shipped tuned config of ``algorithm`` on ``env``, or None."""
    path = resources.files("purerl.configs") / algorithm / f"{env}.json"
    return Path(str(path)) if path.is_file() else None


def tuned_config(algorithm: str, env: str, **overrides: Any) -> Any:
    """The shipped tuned config of ``algorithm`` on ``env`` with ``overrides``; ValueError if none ships."""
    from purerl.io.run import ALGORITHMS

    path = tuned_config_path(algorithm, env)
    if path is None:
        tuned = ", ".join(tuned_envs(algorithm))
        raise ValueError(f"purerl ships no tuned {algorithm} config for {env}; tuned: {tuned}")
    return config_from_dict(ALGORITHMS[algorithm].config_cls, load_config_values(path) | overrides)


def tuned_envs(algorithm: str) -> list[str]:
    """Envs with a shipped tuned config for ``algorithm``, sorted (a suite's in its folder: ``brax/hopper``)."""
    folder = resources.files("purerl.configs") / algorithm
    if not folder.is_dir():
        return []
    names = [entry.name for entry in folder.iterdir() if entry.name.endswith(".json")]
    suites = [entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("__")]
    names += [
        f"{suite.name}/{entry.name}" for suite in suites for entry in suite.iterdir() if entry.name.endswith(".json")
    ]
    return sorted(name.removesuffix(".json") for name in names)


def base_values(
    algorithm: str, config_cls: type, config: str | None, env: str | None, budget_flag: bool = False
) -> tuple[dict[str, Any], str]:
    """``(values, note)``: the config values a command starts from (before its explicit flags), and a one-line
    note saying where they came from (empty when from a file or the defaults asked for). ``budget_flag``: the
    command sets ``total_timesteps`` itself, so the note does not announce the tuned budget."""
    if config == DEFAULTS:
        return {}, ""
    if config is not None:
        if not Path(config).is_file():
            raise ValueError(f"config file {config!r} does not exist (--config {DEFAULTS}: the generic defaults)")
        values = load_config_values(config)
        saved_by = values.get("_algorithm", algorithm)
        if saved_by != algorithm:  # a hand-edited or LM config's may be anything: named as it is
            by = f"{title(saved_by)} run's" if isinstance(saved_by, str) else f"_algorithm={saved_by!r}"
            raise ValueError(
                f"--config {config} is a {by} config, not {title(algorithm)}'s: give it to that algorithm's "
                "command, or copy the fields you want into a file without _algorithm"
            )
        return values, ""
    env = env if env is not None else config_cls.__dataclass_fields__["env"].default
    path = tuned_config_path(algorithm, env)
    if path is None:
        return {}, f"{env}: purerl ships no tuned {title(algorithm)} config for it; the generic defaults"
    values = load_config_values(path)
    if "total_timesteps" not in values:
        budget = ""
    elif budget_flag:
        budget = "; --total-timesteps replaces its budget"
    else:
        budget = f", {values['total_timesteps']:,} env steps per seed"
    note = (
        f"{env}: starting from purerl's tuned {title(algorithm)} config (purerl/configs/{algorithm}/{env}.json"
        f"{budget}); flags override it, --config {DEFAULTS} gives the generic defaults"
    )
    return values, note


def control_config_from_args(algorithm: str, config_cls: type, args: argparse.Namespace) -> tuple[Any, str]:
    """``(config, note)`` of ``purerl train|sweep ALGORITHM``: ``base_values``, then every flag given
    explicitly; the note says where the values came from (for the command to print once it runs)."""
    types_ = field_types(config_cls)
    env_flag = getattr(args, "field_env", None)
    env = None if env_flag is None else parse_value("env", types_["env"], env_flag)
    config = None if args.config is None else str(args.config)
    budget_flag = getattr(args, "field_total_timesteps", None) is not None
    values, note = base_values(algorithm, config_cls, config, env, budget_flag)
    for name, text in vars(args).items():
        if name.startswith("field_"):
            field = name.removeprefix("field_")
            values[field] = parse_value(field, types_[field], text)
    return config_from_dict(config_cls, values), note
