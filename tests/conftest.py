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


# A real store from a tiny reproduce of the headline claim (about 6 CPU-seconds), built once per
# session: the README test and the read-only test read it.
TINY_LOWSENS = ["n=4", "train_sizes=[4]", "function_seeds=[0,1]", "random_completions=1",
                "train.steps=20", "train.batch=8", "train.eval_every=10", "model.params.d_model=8",
                "model.params.n_heads=2", "model.params.n_layers=1", "model.params.d_ff=8"]


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    from biaslab.cli import main

    path = tmp_path_factory.mktemp("tiny") / "demo.sqlite"
    sets = [a for o in TINY_LOWSENS for a in ("--set", o)]
    assert main(["reproduce", "lowsens-learned-below-random", "--preset", "cpu", *sets,
                 "--store", str(path), "--quiet"]) == 0
    return path
