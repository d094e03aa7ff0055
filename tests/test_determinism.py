"""Determinism on CPU: the same sweep with the same seeds, run twice on this device, stores
bit-identical metrics, curves and checkpoints (docs/reliability.md gives the GPU tolerances)."""

import hashlib
import sqlite3
import struct

from biaslab.execute import run_experiment
from biaslab.experiments import get_experiment
from biaslab.spec import resolve
from biaslab.store import Store
from biaslab.store.db import resolve_artifact

EXP = "lowsens-generalization"
TINY = ["n=6", "train_sizes=[8,16]", "function_seeds=[0,1]", "random_completions=2",
        "model.params={d_model: 16, d_ff: 16, n_heads: 2, n_layers: 1}",
        "train.steps=60", "train.batch=32", "train.eval_every=20", "train.converge=none"]


def _sweep(path, max_members=None):
    exp = get_experiment(EXP)
    spec = resolve(exp.Spec, EXP, "cpu", None, TINY)
    with Store(path) as store:
        run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None,
                       max_members=max_members)
    con = sqlite3.connect(path)
    # every stored number, bit for bit (NaN compares equal to itself this way)
    metrics = {(rid, step, name): struct.pack("<d", v) if v is not None else None
               for rid, step, name, v in con.execute("SELECT run_id, step, name, value FROM metrics")}
    # artifact paths are stored relative to the store's folder
    files = {(rid, name): hashlib.sha256(open(resolve_artifact(path, p), "rb").read()).hexdigest()
             for rid, name, p in con.execute("SELECT run_id, name, path FROM artifacts")}
    con.close()
    return metrics, files


def test_same_seed_same_device_gives_bit_identical_store(tmp_path):
    m1, f1 = _sweep(tmp_path / "a.sqlite")
    m2, f2 = _sweep(tmp_path / "b.sqlite")
    assert len(m1) >= 4 * 9 and len(f1) == 4 * 3
    assert m1 == m2  # final metrics and curves
    assert f1 == f2  # checkpoints (safetensors) and tables (.npy), byte for byte
    print(f"DETERMINISM cpu: {len(m1)} stored values and {len(f1)} artifact files bit-identical")
