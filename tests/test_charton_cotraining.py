"""lawt-cotraining: per-code scoring against rows whose fate is known, the claim's scale logic,
and a tiny reproduce end to end (seconds)."""

from __future__ import annotations

import json

import numpy as np
import torch

from biaslab.registry import CLAIMS, TASKS, load_all

load_all()


def predicted_tokens(task, test, scale: dict, wrong_code: set) -> torch.Tensor:
    """Decoder output rows [N, decoder_len]: each row's true answer (as decoded from its target)
    times ``scale[row]`` (default 1), written back with the task's encoder, behind the row's code
    token, or behind the other code's token for rows in ``wrong_code``."""
    vocab, enc = task.vocab, task.output_encoding
    out = torch.full((test.x.shape[0], task.decoder_len), task.pad_id, dtype=torch.int64)
    for i, code in enumerate(task.codes):
        part = test.parts[code]
        factors = torch.tensor([scale.get(int(r), 1.0) for r in part.rows], dtype=torch.float64)
        ids, lengths, bad = vocab.encode(enc, part.answers_rounded * factors[:, None, None],
                                         task.decoder_len - 2)
        assert not bad.any()
        for j, row in enumerate(part.rows.tolist()):
            other = task.codes[1 - i]
            out[row, 0] = task.code_id(other if row in wrong_code else code)
            out[row, 1:1 + int(lengths[j])] = ids[j, :int(lengths[j])]
            out[row, 1 + int(lengths[j])] = task.eos_id
    return out


def test_per_code_scoring_counts_the_rows_it_should():
    """Rows right by construction, rows 20% off (wrong at every tolerance, relative L1 = 0.2
    within rounding), and rows behind the other task's code (malformed, the reference's rule),
    scored per code; expected counts and errors computed independently with numpy."""
    from biaslab.experiments.charton.protocol import accuracy_metrics, score_tokens

    task = TASKS.get("cotraining").from_dict({"dim": 2, "encoding": "p10", "tasks": "TA"})
    test = task.test_set(7, 60)
    codes = test.codes.numpy()
    t_rows, a_rows = np.flatnonzero(codes == 0), np.flatnonzero(codes == 1)
    off = {int(r): 1.2 for r in list(t_rows[:3]) + list(a_rows[:5])}
    wrong_code = {int(t_rows[3]), int(a_rows[5]), int(a_rows[6])}
    tokens = predicted_tokens(task, test, off, wrong_code)
    ev = score_tokens(task, test, tokens, torch.zeros(60, dtype=torch.bool), [0.05, 0.005])
    m = accuracy_metrics(ev)
    for code, rows in (("T", t_rows), ("A", a_rows)):
        right = [r for r in rows if r not in off and r not in wrong_code]
        assert m[f"{code}.n_test"] == len(rows)
        assert m[f"{code}.acc_5"] == m[f"{code}.acc_0.5"] == len(right) / len(rows)
        assert m[f"{code}.malformed_rate"] == len(wrong_code & set(rows.tolist())) / len(rows)
        # the error of the 20%-off rows, recomputed from the raw decoded tokens with numpy
        part, e = test.parts[code], ev[code]
        where = {int(r): j for j, r in enumerate(part.rows)}
        for r in off:
            if r in where:
                j = where[r]
                pred, _ = task.vocab.decode(task.output_encoding, tokens[r:r + 1, 1:],
                                            *part.answers_rounded.shape[1:])
                truth = part.answers_rounded[j].numpy()
                want = np.abs(pred[0].numpy() - truth).sum() / np.abs(truth).sum()
                assert abs(float(e.error[j]) - want) < 1e-12 and 0.18 < want < 0.22
    n_right = 60 - len(off) - len(wrong_code)
    assert m["acc_5"] == n_right / 60


def test_cotraining_claim_reads_each_code_at_its_scale():
    """One code learned, the other missed in a cell that cannot decide: INCONCLUSIVE, never FAIL;
    no code reaching 90% at that scale: not testable; the same miss at paper scale FAILs."""
    from claim_tables.charton import cotraining_rows

    check = CLAIMS.get("lawt-cotraining-learns-every-task").check
    mixed = check(cotraining_rows((0.99, 0.98, 0.99), (0.1, 0.2, 0.1)))
    assert mixed.status == "INCONCLUSIVE" and not mixed.not_testable
    none = check(cotraining_rows((0.3, 0.2, 0.1), (0.1, 0.2, 0.1)))
    assert none.status == "INCONCLUSIVE" and none.not_testable
    assert check(cotraining_rows((0.3, 0.2, 0.1), (0.1, 0.2, 0.1), True)).status == "FAIL"


TINY = ["entries=[{tasks: TA, dim: 2, input_encoding: p10, output_encoding: p10}]",
        "seeds=[0,1,2]", "model.d_model=16", "model.n_heads=2", "model.n_enc_layers=1",
        "model.n_dec_layers=1", "train.steps=4", "train.batch=8", "train.eval_every=4",
        "train.warmup_steps=2", "test_size=30", "decode_batch=30"]


def test_tiny_reproduce_end_to_end(tmp_path, capsys):
    from biaslab.cli import main
    from biaslab.experiments import get_experiment
    from biaslab.store import Store
    from biaslab.store.artifacts import load_array

    torch.set_num_threads(1)
    store = tmp_path / "s.sqlite"
    sets = [a for o in TINY for a in ("--set", o)]
    assert main(["reproduce", "--experiment", "lawt-cotraining", "--preset", "cpu", *sets,
                 "--store", str(store), "--json", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [p["claim"] for p in printed] == ["lawt-cotraining-learns-every-task"]
    assert printed[0]["status"] == "INCONCLUSIVE"  # 4 steps learn nothing: not testable here
    with Store(store, create=False) as s:
        table = s.table("lawt-cotraining")
        assert len(table) == 3
        row = table[0]
        assert row["T.n_test"] + row["A.n_test"] == 30
        for key in ("acc_5", "T.acc_5", "A.acc_5", "T.acc_0.5", "A.malformed_rate"):
            assert 0 <= row[key] <= 1
        arrays = {k: load_array(v) for k, v in s.artifacts(row["run_id"]).items()
                  if v.endswith(".npy")}
    figs = get_experiment("lawt-cotraining").figures(table)
    assert list(figs) == ["accuracy_by_tolerance_per_task"]
    assert arrays["test_codes"].shape == (30,)
    assert sorted(np.concatenate([arrays["T_rows"], arrays["A_rows"]]).tolist()) == list(range(30))
