"""Typed experiment specs: YAML presets shipped with the package plus dotted key=value overrides.

Resolution order: the spec class's defaults < the chosen preset (``experiments/specs/NAME.yaml``)
< a user YAML file (``--spec FILE``) < command-line overrides (``train.steps=2000``). The result is
validated by the experiment's pydantic class, whose errors name the field and accepted values.
Then ``--only FIELD=NAMES`` keeps a subset of a sweep (a mapping, e.g. ``sweeps=A``) or of a grid
axis (a list, e.g. ``ns=4,8``): the one thing an override cannot do, since merging never drops
a preset's key. ``describe`` lists every field of a resolved spec with its description.
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
            spec_file: str | None = None, overrides: list[str] | dict | None = None,
            only: list[str] | tuple = ()) -> BaseModel:
    values: dict = {}
    presets = presets_of(experiment)
    if preset is not None:
        if preset not in presets:
            raise InputError("preset", f"unknown preset {preset!r} for {experiment}",
                             ", ".join(sorted(presets)) or "none")
        values = deep_merge(values, presets[preset] or {})
    if spec_file:
        values = deep_merge(values, load_yaml(spec_file))
    if not isinstance(overrides, dict):
        overrides = parse_overrides(overrides)
    _check_entry_names(spec_cls, values, overrides)
    values = deep_merge(values, overrides)
    spec = _validated(spec_cls, values)
    if only:
        spec = _validated(spec_cls, select(spec.model_dump(), only))
    return spec


def _entry_fields(spec_cls) -> dict[str, list[str]]:
    """Fields that map names to specs (sweeps, architectures): field -> the default's names."""
    out = {}
    for name, info in spec_cls.model_fields.items():
        args = getattr(info.annotation, "__args__", ())
        if len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            default = info.get_default(call_default_factory=True)
            out[name] = list(default) if isinstance(default, dict) else []
    return out


def _check_entry_names(spec_cls, values: dict, overrides: dict) -> None:
    """An override naming an entry that no sweep / architecture mapping holds is a typo
    (``sweeps.a.lr`` where the sweep is ``A``): merged, it would silently add an entry filled
    with defaults. A new entry is written whole in a --spec file instead."""
    for field, default_names in _entry_fields(spec_cls).items():
        given = overrides.get(field)
        if not isinstance(given, dict):
            continue
        have = [str(k) for k in (values.get(field) or {})] or [str(k) for k in default_names]
        unknown = [str(k) for k in given if str(k) not in have]
        if have and unknown:
            raise InputError(field, f"no entry named {unknown[0]!r}",
                             f"{', '.join(have)} (a new entry: write it whole in a --spec file)")


def _validated(spec_cls: type[BaseModel], values: dict) -> BaseModel:
    try:
        return spec_cls(**values)
    except ValidationError as exc:
        raise pydantic_to_input_error(exc, model_cls=spec_cls) from None


def select(values: dict, only: list[str]) -> dict:
    """Keep only the named entries of sweeps / grid axes: ['sweeps=A', 'ns=4,8'] keeps key A of
    the mapping ``sweeps`` and the values 4 and 8 of the list ``ns`` (dotted fields reach inside:
    ``sweeps.A.targets=parity``). A name the field does not hold is an error."""
    values = deep_merge(values, {})
    for item in only:
        field, sep, raw = item.partition("=")
        if not sep or not field or not raw:
            raise InputError("only", f"{item!r} is not of the form FIELD=NAME[,NAME]",
                             "e.g. sweeps=A or ns=4,8")
        *parents, last = field.split(".")
        node = values
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            raise InputError("only", f"the spec has no field {field!r}", ", ".join(_axes(values))[:300])
        current, names = node[last], [parse_value(v) for v in raw.split(",")]
        if isinstance(current, dict):
            have = [str(k) for k in current]
            wanted = [str(n) for n in names]
            kept = {k: v for k, v in current.items() if str(k) in wanted}
        elif isinstance(current, list):
            have = [str(v) for v in current]
            wanted = [str(n) for n in names]
            kept = [v for v in current if str(v) in wanted or v in names]
        else:
            raise InputError("only", f"{field} is neither a sweep (mapping) nor a grid axis (list)",
                             "a field holding several entries")
        missing = [w for w, n in zip(wanted, names) if w not in have and n not in current]
        if missing:
            raise InputError("only", f"{field} has no {', '.join(missing)}", ", ".join(have))
        node[last] = kept
    return values


def _axes(values: dict, prefix: str = "") -> list[str]:
    """Dotted names of every sweep (mapping) and grid axis (list) of a spec's values."""
    out = []
    for k, v in values.items():
        if isinstance(v, list) and v and not isinstance(v[0], dict):
            out.append(f"{prefix}{k}")
        elif isinstance(v, dict) and v:
            if all(isinstance(x, dict) for x in v.values()) and k != "model":
                out.append(f"{prefix}{k}")
            out += _axes(v, f"{prefix}{k}.")
    return out


def describe(spec: BaseModel, prefix: str = "") -> list[dict]:
    """Every leaf field of a resolved spec, depth first: {field, value, description}. Nested
    specs, mappings of specs (sweeps) and lists of specs are opened; other values are leaves."""
    rows = []
    for name, info in type(spec).model_fields.items():
        value, key = getattr(spec, name), f"{prefix}{name}"
        desc = info.description or ""
        if isinstance(value, BaseModel):
            rows.append({"field": key, "value": None, "description": desc, "group": True})
            rows += describe(value, key + ".")
        elif isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
            rows.append({"field": key, "value": None, "description": desc, "group": True})
            for k, v in value.items():
                rows += describe(v, f"{key}.{k}.")
        elif isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
            rows.append({"field": key, "value": None, "description": desc, "group": True})
            for i, v in enumerate(value):
                rows += describe(v, f"{key}.{i}.")
        else:
            rows.append({"field": key, "value": value, "description": desc, "group": False})
    return rows
