"""lawt-encodings: one task under the four number encodings, side by side.

Charton, "Linear algebra with transformers" (sheet ``math-transformer.md`` section 1): P10, P1000,
B1999 and FP15 write a number in 5, 3, 2 and 1 tokens, so a 5x5 matrix is 127, 77, 52 and 27
tokens, while the vocabulary grows from ~200 to ~29,000 words. This experiment trains the same
task and model under each encoding (input and output alike unless an entry says otherwise) and
records accuracy at every tolerance, the sequence lengths, the vocabulary size and the training
cost (seconds, examples/s) of each. It reports; it tests no claim of the paper (the sheet records
no published comparison to check against).
"""

from __future__ import annotations

from pydantic import Field

from ..base import Experiment, register_experiment
from .protocol import LinalgEntry, LinalgSpec, accuracy_outcomes, plan_entries

ENCODINGS = ["p10", "p1000", "b1999", "fp15"]


class LawtEncodingsSpec(LinalgSpec):
    entries: list[LinalgEntry] = Field(
        default_factory=lambda: [LinalgEntry(task="matrix_sum", dim=3, input_encoding=e,
                                             output_encoding=e) for e in ENCODINGS],
        min_length=1, description="one cell per encoding (same task and size)")


@register_experiment
class LawtEncodings(Experiment):
    name = "lawt-encodings"
    description = "one linear-algebra task under P10, P1000, B1999 and FP15: accuracy, sequence length, training cost"
    Spec = LawtEncodingsSpec

    def plan(self, spec):
        return plan_entries(self, spec)

    def run_group(self, spec, plans, device, progress=False):
        return accuracy_outcomes(spec, plans, device, progress, keep_model=False)

    def figures(self, table, artifacts=None):
        from .figures import accuracy_by_tolerance, encodings_side_by_side

        if not table:
            return {}
        return {"encodings_side_by_side": encodings_side_by_side(table),
                "accuracy_by_tolerance": accuracy_by_tolerance(table)}
