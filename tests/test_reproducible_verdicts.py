"""The same `reproduce` on a fresh store on the same machine stores bit-identical values (issue
20 item 6): two claims of two experiments, reproduced twice on fresh stores — once in-process,
once through the two-worker pool — give the same metrics, curves and verdict numbers, bit for
bit. And `--replicates 2` reruns them on a disjoint seed set and records each verdict's
stability beside it."""

import json
import sqlite3
import struct

from biaslab.cli import main

TINY_MODEL = ["model.params.d_model=8", "model.params.n_heads=2", "model.params.n_layers=1",
              "model.params.d_ff=8"]
SETS = {
    "lowsens-learned-below-random": ["n=4", "train_sizes=[4]", "function_seeds=[0,1,2]",
                                     "random_completions=1", "train.steps=20", "train.batch=8",
                                     "train.eval_every=10", *TINY_MODEL],
    "majority-extends-parity-fails": ["n=3", "seeds=[0,1,2]", "test_lengths=[3,7]",
                                      "positions=[none]", "train.steps=20", "train.batch=32",
                                      "train.eval_every=10", "eval_batches=1", "eval_batch=32",
                                      *TINY_MODEL],
}


def _reproduce(path, claim, *extra):
    sets = [a for o in SETS[claim] for a in ("--set", o)]
    assert main(["reproduce", claim, "--preset", "cpu", *sets, "--store", str(path), "--quiet",
                 "--json", *extra]) == 0


def _stored(path):
    con = sqlite3.connect(path)
    metrics = {(rid, step, name): struct.pack("<d", v) if v is not None else None
               for rid, step, name, v in con.execute("SELECT run_id, step, name, value FROM metrics")}
    verdicts = {c: (s, json.loads(n)) for c, s, n in
                con.execute("SELECT claim, status, numbers FROM verdicts")}
    con.close()
    return metrics, verdicts


def test_fresh_stores_hold_bit_identical_values_in_process_and_through_the_pool(tmp_path, capsys):
    for claim in SETS:
        _reproduce(tmp_path / "a.sqlite", claim)
        _reproduce(tmp_path / "b.sqlite", claim, "--workers", "2")
    capsys.readouterr()
    (ma, va), (mb, vb) = _stored(tmp_path / "a.sqlite"), _stored(tmp_path / "b.sqlite")
    assert len(ma) > 50 and set(va) == set(SETS)
    assert ma == mb
    assert va == vb


def test_replicates_record_each_verdicts_stability(tmp_path, capsys):
    claim = "lowsens-learned-below-random"
    _reproduce(tmp_path / "r.sqlite", claim, "--replicates", "2")
    printed = json.loads(capsys.readouterr().out)
    assert len(printed[0]["replicates"]) == 2
    assert printed[0]["stability"] in ("stable", "seed-dependent")
    con = sqlite3.connect(tmp_path / "r.sqlite")
    seeds = {json.loads(c)["function_seed"] for (c,) in con.execute("SELECT config FROM runs")}
    con.close()
    assert {0, 1, 2, 1000, 1001, 1002} <= seeds
