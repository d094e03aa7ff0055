"""The command line: exact measures, sampling, and one-line errors with exit code 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from biaslab.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args,expected", [
    (["parity", "n=12"], 12.0),
    (["majority", "n=9"], 2.4609375),
    (["first", "n=7"], 1.0),
    (["sparse_parity", "k=3", "n=20"], 3.0),
])
def test_measure_sensitivity_exact(capsys, args, expected):
    code, out, _ = run_cli(capsys, "measure", "sensitivity", *args, "--json")
    assert code == 0
    assert json.loads(out)["average_sensitivity"] == pytest.approx(expected, abs=1e-9)


def test_measure_sensitivity_of_table_matches_bitflips(capsys, tmp_path):
    rng = np.random.default_rng(0)
    for n in (3, 6, 9):
        table = rng.integers(0, 2, 2 ** n)
        brute = np.mean([sum(table[x] != table[x ^ (1 << i)] for i in range(n)) for x in range(2 ** n)])
        path = tmp_path / f"t{n}.npy"
        np.save(path, table)
        code, out, _ = run_cli(capsys, "measure", "sensitivity", "--table", str(path), "--json")
        assert code == 0 and json.loads(out)["average_sensitivity"] == pytest.approx(brute, abs=1e-12)
        np.save(path, 2 * table - 1)  # the same function on the +-1 scale
        code, out, _ = run_cli(capsys, "measure", "sensitivity", "--table", str(path), "--json")
        assert json.loads(out)["average_sensitivity"] == pytest.approx(brute, abs=1e-12)


def test_measure_fourier_weights(capsys):
    code, out, _ = run_cli(capsys, "measure", "fourier", "parity", "n=5", "--json")
    prof = json.loads(out)["degree_profile"]
    assert code == 0 and prof == pytest.approx([0, 0, 0, 0, 0, 1])


def test_measure_large_n_is_sampled_with_interval(capsys):
    code, out, _ = run_cli(capsys, "measure", "sensitivity", "parity", "n=40", "--samples", "200", "--json")
    r = json.loads(out)
    assert code == 0 and r["exact"] is False and r["average_sensitivity"] == pytest.approx(40)


def test_sample_json(capsys):
    code, out, _ = run_cli(capsys, "sample", "parity", "n=6", "--count", "5", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 5
    for r in rows:
        assert len(r["input"]) == 6 and r["target"] == sum(r["input"]) % 2


def test_list_json(capsys):
    code, out, _ = run_cli(capsys, "list", "--json")
    d = json.loads(out)
    assert code == 0
    assert {"parity", "majority"} <= {e["name"] for e in d["tasks"]}
    assert {"transformer", "mlp", "lstm", "cnn"} <= {e["name"] for e in d["models"]}
    assert "lowsens-generalization" in {e["name"] for e in d["experiments"]}
    assert all(e["description"] for k in d for e in d[k])


def _bad_inputs(tmp_path):
    odd = tmp_path / "odd.npy"
    np.save(odd, np.zeros(6))
    yaml_bad = tmp_path / "bad.yaml"
    yaml_bad.write_text("n: [1, 2\nfoo: : :")
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"garbage" * 100)
    return [
        (["sample", "nosuchtask", "--count", "3"], "task"),
        (["sample", "parity", "n=0", "--count", "3"], "parity.n"),
        (["sample", "parity", "n=abc", "--count", "3"], "parity.n"),
        (["sample", "parity", "n=5", "colour=red"], "parity.colour"),
        (["sample", "parity", "n=5", "--split", "dev"], "split"),
        (["measure", "sensitivity", "--table", str(odd)], "table"),
        (["measure", "sensitivity", "--table", str(tmp_path / "none.npy")], "table"),
        (["run", "nosuchexperiment", "--store", str(tmp_path / "a.sqlite")], "experiment"),
        (["run", "lowsens-generalization", "bogus=1", "--store", str(tmp_path / "a.sqlite")], "bogus"),
        (["run", "lowsens-generalization", "n=-3", "--store", str(tmp_path / "a.sqlite")], "n"),
        (["run", "lowsens-generalization", "lr=fast", "--store", str(tmp_path / "a.sqlite")], "lr"),
        (["run", "lowsens-generalization", "--preset", "huge", "--store", str(tmp_path / "a.sqlite")], "preset"),
        (["run", "lowsens-generalization", "--spec", str(yaml_bad), "--store", str(tmp_path / "a.sqlite")], "spec"),
        (["run", "lowsens-generalization", "model.name=gpt9", "--store", str(tmp_path / "a.sqlite")], "model"),
        (["run", "lowsens-generalization", "model.params.d_model=7", "--store", str(tmp_path / "a.sqlite")], "model"),
        (["runs", "--store", str(corrupt)], "store"),
        (["runs", "--store", str(tmp_path / "missing.sqlite")], "store"),
        (["reproduce", "no-such-claim", "--store", str(tmp_path / "a.sqlite")], "claim"),
        (["reproduce", "--experiment", "nosuch", "--store", str(tmp_path / "a.sqlite")], "experiment"),
        (["reproduce", "--all", "--experiment", "scratchpad", "--store", str(tmp_path / "a.sqlite")], "claims"),
        (["frobnicate"], "arguments"),
    ]


def test_bad_input_is_one_line_exit_2_nothing_written(capsys, tmp_path):
    for args, field in _bad_inputs(tmp_path):
        before = sorted(p.name for p in tmp_path.iterdir())
        code, out, err = run_cli(capsys, *args)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2, (args, err)
        assert len(lines) == 1 and "Traceback" not in err, (args, err)
        assert lines[0].startswith(f"biaslab: error: {field}"), (args, lines[0])
        assert sorted(p.name for p in tmp_path.iterdir()) == before, args


def test_console_script_exit_code(tmp_path):
    """Through a real process: exit status 2, one line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "biaslab", "measure", "sensitivity", "parity", "n=0"],
                          capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "n" in proc.stderr
