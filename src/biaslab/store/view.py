"""Read-only views of stored runs: what an experiment that depends on another, and a figure drawn
from run artifacts, get to read. Plain data (rows and file paths), so a worker process can hold
one; nothing here writes the store."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .artifacts import load_array


@dataclass(frozen=True)
class Artifacts:
    """run id -> artifact name -> file path, with loaders for the files."""

    paths: dict[str, dict[str, str]] = field(default_factory=dict)

    def of(self, run_id: str) -> dict[str, str]:
        return dict(self.paths.get(run_id, {}))

    def array(self, run_id: str, name: str) -> np.ndarray:
        return load_array(self.paths[run_id][name])

    def arrays(self, run_id: str) -> dict[str, np.ndarray]:
        """Every .npy artifact of a run, loaded."""
        return {name: load_array(path) for name, path in self.of(run_id).items()
                if str(path).endswith(".npy")}

    def merged(self, other: "Artifacts") -> "Artifacts":
        return Artifacts({**self.paths, **other.paths})


@dataclass(frozen=True)
class RunsView:
    """Finished runs of some experiments (experiment -> flat rows) and their artifacts."""

    tables: dict[str, list[dict]] = field(default_factory=dict)
    artifacts: Artifacts = field(default_factory=Artifacts)

    def table(self, experiment: str) -> list[dict]:
        return list(self.tables.get(experiment, []))

    def merged(self, other: "RunsView") -> "RunsView":
        return RunsView({**self.tables, **other.tables}, self.artifacts.merged(other.artifacts))
