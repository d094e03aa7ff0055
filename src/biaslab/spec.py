"""Typed experiment specs: YAML presets shipped with the package plus dotted key=value overrides.

Resolution order: the spec class's defaults < the chosen preset (``experiments/specs/NAME.yaml``)
< a user YAML file (``--spec FILE``) < command-line overrides (``train.steps=2000``). The result is
validated by the experiment's pydantic class, whose errors name the field and accepted values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import InputError, pydantic_to_input_error

SPEC_DIR = Path(__file__).parent / "experiments" / "specs"


def parse_value(text: str) -> Any:
    """A command-line value as YAML scalar/list: '3' -> 3, '1e-3' -> 0.001, '[1,2]' -> [1, 2]."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        # YAML 1.1 reads '1e-3' as a string; accept float notation users will type.
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_overrides(items: list[str] | None, field: str = "override") -> dict:
    """['a.b=1', 'c=x'] -> {'a': {'b': 1}, 'c': 'x'}."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(field, f"{item!r} is not of the form key=value", "key=value, e.g. n=12")
        key, _, raw = item.partition("=")
        if not key or any(not part for part in key.split(".")):
            raise InputError(field, f"empty key in {item!r}", "dotted keys like train.steps=100")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(field, f"{key!r} sets a field inside a value", "distinct keys")
        node[parts[-1]] = parse_value(raw)
    return out


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path, field: str = "spec") -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(field, f"cannot read {path} ({exc.strerror})", "a readable YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(field, f"malformed YAML in {path}{where}", "a YAML mapping") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(field, f"{path} holds a {type(data).__name__}, not a mapping", "a YAML mapping")
    return data


def presets_of(experiment: str) -> dict[str, dict]:
    path = SPEC_DIR / f"{experiment}.yaml"
    return load_yaml(path) if path.exists() else {}


def resolve(spec_cls: type[BaseModel], experiment: str, preset: str | None = None,
            spec_file: str | None = None, overrides: list[str] | dict | None = None) -> BaseModel:
    values: dict = {}
    presets = presets_of(experiment)
    if preset is not None:
        if preset not in presets:
            raise InputError("preset", f"unknown preset {preset!r} for {experiment}",
                             ", ".join(sorted(presets)) or "none")
        values = deep_merge(values, presets[preset] or {})
    if spec_file:
        values = deep_merge(values, load_yaml(spec_file))
    if isinstance(overrides, dict):
        values = deep_merge(values, overrides)
    else:
        values = deep_merge(values, parse_overrides(overrides))
    try:
        return spec_cls(**values)
    except ValidationError as exc:
        raise pydantic_to_input_error(exc, model_cls=spec_cls) from None
