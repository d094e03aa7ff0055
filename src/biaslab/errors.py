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


def pydantic_to_input_error(exc, prefix: str = "") -> InputError:
    """Turn the first error of a pydantic ValidationError into an InputError naming the field."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    field = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "value")
    accepted = None
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        accepted = str(ctx["expected"])
    elif err.get("type") == "extra_forbidden":
        accepted = None
    given = err.get("input")
    problem = err.get("msg", "invalid value")
    if err.get("type") != "extra_forbidden" and given is not None and not isinstance(given, dict):
        problem = f"{problem}, got {given!r}"
    return InputError(field, problem, accepted)
