"""One exception type for bad input: the CLI turns it into one line and exit code 2."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from a user: names the field, what was given, and what is accepted."""

    def __init__(self, field: str, problem: str, accepted: str | None = None):
        self.field = field
        self.problem = problem
        self.accepted = accepted
        msg = f"{field}: {problem}"
        if accepted:
            msg += f" (accepted: {accepted})"
        super().__init__(msg)


class RunsFailed(RuntimeError):
    """Runs whose stack raised while training: stored as failed with their error; the CLI says
    so in one line (exit 1) and ``biaslab doctor`` says what to change."""

    def __init__(self, count: int, experiment: str, error: str, store: str | None = None):
        self.count, self.experiment, self.error = count, experiment, error
        where = f" --store {store}" if store else ""
        super().__init__(f"{count} runs of {experiment} failed ({error}); they are stored as failed "
                         f"and rerunning as is will fail again: `biaslab doctor{where}` says what "
                         "to change")


def _fields_at(model_cls, loc) -> list[str] | None:
    """The field names of the (nested) pydantic model that holds ``loc``'s last key."""
    cls = model_cls
    for key in loc[:-1]:
        fields = getattr(cls, "model_fields", None)
        if fields is None:
            return None
        if key in fields:
            ann = fields[key].annotation
        else:  # a dict of models (e.g. sweeps.A): step into the value type
            ann = cls
        args = getattr(ann, "__args__", ())
        cls = next((a for a in (ann, *args[::-1]) if hasattr(a, "model_fields")), None)
        if cls is None:
            return None
    fields = getattr(cls, "model_fields", None)
    return sorted(fields) if fields else None


def pydantic_to_input_error(exc, prefix: str = "", model_cls=None) -> InputError:
    """Turn the first error of a pydantic ValidationError into an InputError naming the field."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    field = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "value")
    accepted = None
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        accepted = str(ctx["expected"])
    elif err.get("type") == "extra_forbidden":
        names = _fields_at(model_cls or getattr(exc, "title", None), tuple(err.get("loc", ())))
        accepted = ", ".join(names) if names else None
    given = err.get("input")
    problem = err.get("msg", "invalid value")
    if err.get("type") != "extra_forbidden" and given is not None and not isinstance(given, dict):
        problem = f"{problem}, got {given!r}"
    return InputError(field, problem, accepted)
