import os

import pytest
import torch

# Tests are CPU-only and small; keep thread counts modest so two cores are not oversubscribed.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def tmp_store(tmp_path):
    return tmp_path / "store.sqlite"
