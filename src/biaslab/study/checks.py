"""Everything wrong with a study file, found before anything trains: one InputError each."""

from __future__ import annotations

import torch

from .. import rng
from ..errors import InputError, pydantic_to_input_error
from ..registry import CLAIMS
from ..spec import load_yaml
from .spec import AXES, NAME, SETTINGS, STUDY_MEASURES, StudySpec

MAX_SENSITIVITY_N = 16  # the exact sensitivity reads the whole cube: 2^16 inputs per member


def _task(label, choice):
    from ..tasks import make_task

    try:
        return make_task(choice.name, choice.params)
    except InputError as exc:
        field = f"tasks.{label}.name" if exc.field == "task" else f"tasks.{label}.params"
        raise InputError(field, exc.problem, exc.accepted) from None


def _probe(task, tlabel, mlabel, choice, gamma):
    """Build the model for the task on the CPU and run it on a tiny batch: (model, x, output)."""
    from ..models import build_model

    try:
        model = build_model(choice.name, choice.params, task, seed=0, gamma=gamma)
        state = task.make_state(0)
        x, _ = task.sample(state, rng.key_of(0), 4, "train")
        with torch.no_grad():
            out = model(x)
    except InputError:
        raise
    except Exception as exc:  # a model that does not fit the task: its own message, one line
        raise InputError(f"models.{mlabel}", f"does not run on task {tlabel} "
                         f"({type(exc).__name__}: {str(exc)[:160]})",
                         "a model whose inputs and outputs fit the task") from None
    return model, x, out


def _check_measures(spec: StudySpec, task, tlabel, model, mlabel, x, out) -> None:
    from ..models.roles import parameter_roles
    from ..tasks.boolean import BooleanTask

    for m in spec.measures:
        why = None
        if m == "blowup" and not parameter_roles(model).layer_norms:
            why = f"model {mlabel} has no LayerNorm"
        elif m == "sensitivity" and not (isinstance(task, BooleanTask) and task.target_kind == "binary"
                                         and task.n <= MAX_SENSITIVITY_N):
            why = f"task {tlabel} is not a binary Boolean task with n <= {MAX_SENSITIVITY_N}"
        elif m == "mse" and task.target_kind == "classes":
            why = f"task {tlabel} has classes (its accuracy is measured always)"
        elif m == "weight_noise" and not (out.dim() == 2 and out.shape[-1] > 1):
            why = f"model {mlabel} on {tlabel} gives outputs {tuple(out.shape)}, not class logits [B, C>1]"
        elif m == "tokenwise" and not (x.dim() == 2 and not x.dtype.is_floating_point
                                       or x.dim() == 4 and x.shape[-1] % 4 == 0 and x.shape[-2] % 4 == 0):
            why = f"task {tlabel} has inputs {tuple(x.shape)}, neither tokens nor 4x4-patch images"
        if why:
            raise InputError("measures", f"{m} does not apply: {why}",
                             "measures that apply to every task x model of the grid")


def _check_claims(spec: StudySpec, experiment: str) -> None:
    values = {"task": list(spec.tasks), "model": list(spec.models),
              **{k: getattr(spec.settings, k) for k in SETTINGS}}
    seen = set()
    for i, c in enumerate(spec.claims):
        at = f"claims.{i}"
        if not NAME.match(c.name) or c.name in seen:
            raise InputError(f"{at}.name", f"{c.name!r} is not a new lower-case name", "a-z, 0-9, -")
        seen.add(c.name)
        if c.name in CLAIMS and CLAIMS.get(c.name).experiment != experiment:
            raise InputError(f"{at}.name", f"{c.name!r} is a claim of {CLAIMS.get(c.name).experiment}",
                             "a name no other experiment uses")
        if c.statistic not in spec.measures:
            raise InputError(f"{at}.statistic", f"{c.statistic!r} is not measured", ", ".join(spec.measures))
        if c.axis not in AXES:
            raise InputError(f"{at}.axis", f"{c.axis!r}", ", ".join(AXES))
        if c.comparison in ("slope", "correlation"):
            if c.axis not in SETTINGS or len(values[c.axis]) < 2 or None in values[c.axis]:
                raise InputError(f"{at}.axis", f"{c.comparison} needs a numeric axis with >= 2 values",
                                 ", ".join(a for a in SETTINGS if len(values[a]) > 1) or "none here")
        else:
            for side in ("a", "b"):
                if getattr(c, side) not in values[c.axis]:
                    raise InputError(f"{at}.{side}", f"{getattr(c, side)!r} is not a value of {c.axis}",
                                     ", ".join(map(str, values[c.axis])))
        for k, v in c.where.items():
            if k not in AXES or v not in values[k]:
                raise InputError(f"{at}.where.{k}", f"{v!r}", f"axis values: {values.get(k, AXES)}")
        if not c.source.strip():
            raise InputError(f"{at}.source", "empty", "a paper figure/table or 'reason: <one line>'")


def check_study(spec: StudySpec) -> None:
    if not NAME.match(spec.name):
        raise InputError("name", f"{spec.name!r}", "lower case letters, digits and dashes")
    size = len(spec.grid())
    if size > spec.max_runs:
        raise InputError("grid", f"{size} runs exceed max_runs {spec.max_runs}",
                         "fewer tasks, models, settings or seeds (or a larger max_runs)")
    unknown = [m for m in spec.measures if m not in STUDY_MEASURES]
    if unknown or len(set(spec.measures)) != len(spec.measures):
        raise InputError("measures", f"{unknown or 'repeated'}", ", ".join(STUDY_MEASURES))
    tasks = {label: _task(label, choice) for label, choice in spec.tasks.items()}
    for mlabel, choice in spec.models.items():
        choice.validate_now(f"models.{mlabel}")
        for tlabel, task in tasks.items():
            model, x, out = _probe(task, tlabel, mlabel, choice, spec.settings.gamma[0])
            _check_measures(spec, task, tlabel, model, mlabel, x, out)
    _check_claims(spec, f"study-{spec.name}")


def load_study(path: str) -> StudySpec:
    """Read and validate a study file; every mistake is one InputError before any training."""
    from pydantic import ValidationError

    try:
        spec = StudySpec(**load_yaml(path, "study"))
    except ValidationError as exc:
        raise pydantic_to_input_error(exc, model_cls=StudySpec) from None
    check_study(spec)
    return spec
