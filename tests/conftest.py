import os

import pytest
import torch

# Tests are CPU-only and small; keep thread counts modest so two cores are not oversubscribed.
# Tiny models: one intra-op thread avoids OpenMP synchronisation costs that dominate small ops
# (and collapse under CPU contention); the suite runs tests, not benchmarks.
torch.set_num_threads(1)


@pytest.fixture
def tmp_store(tmp_path):
    return tmp_path / "store.sqlite"
