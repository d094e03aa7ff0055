"""`biaslab study FILE.yaml`: a tiny grid end to end (stored, resumable, claims, page), bad
study files (one line, exit 2, nothing written), the claim rules on made-up tables, and the
shipped examples' validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from biaslab.cli import main
from biaslab.experiments.claims import FAIL, INCONCLUSIVE, PASS
from biaslab.study.claims import study_claims
from biaslab.study.checks import load_study
from biaslab.study.spec import StudySpec

EXAMPLES = sorted(Path(__file__).resolve().parents[1].glob("examples/*.yaml"))

TINY = {
    "name": "tiny", "question": "does gamma move anything on parity n=3?",
    "tasks": {"parity": {"name": "parity", "params": {"n": 3}}},
    "models": {"tf": {"name": "transformer", "params": {"d_model": 8, "n_heads": 2, "n_layers": 1,
                                                          "d_ff": 8}}},
    "settings": {"gamma": [0.4, 0.6]},
    "seeds": [0, 1, 2],
    "train": {"steps": 30, "batch": 32, "eval_every": 10},
    "measures": ["accuracy", "sharpness", "blowup", "sensitivity", "tokenwise"],
    "measure": {"batches": 1, "batch": 64, "draws": 2},
    "claims": [{"name": "tiny-sharpness-gamma", "statement": "sharpness rises with gamma",
                "statistic": "sharpness", "comparison": "slope", "axis": "gamma",
                "direction": "greater", "bar": 0, "source": "reason: a test"}],
}


def _write(tmp_path, study, name="study.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(study))
    return path


def test_tiny_study_runs_resumes_checks_and_writes_its_page(tmp_path, capsys):
    path = _write(tmp_path, TINY)
    store, page = tmp_path / "s.sqlite", tmp_path / "page"
    argv = ["study", str(path), "--store", str(store), "--report", str(page), "--quiet", "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["trained"] == 6 and first["skipped"] == 0
    (claim,) = first["claims"]
    assert claim["status"] in (PASS, FAIL, INCONCLUSIVE) and claim["experiment"] == "study-tiny"
    html = (page / "index.html").read_text()
    assert TINY["question"] in html and "tiny-sharpness-gamma" in html
    for m in TINY["measures"]:
        assert (page / f"{m}.png").stat().st_size > 1000
    assert main(argv) == 0  # resumable: nothing retrained
    again = json.loads(capsys.readouterr().out)
    assert again["trained"] == 0 and again["skipped"] == 6
    assert again["claims"][0]["summary"] == claim["summary"]


def _bad(**change):
    study = json.loads(json.dumps(TINY))
    for key, value in change.items():
        study[key] = value
    return study


@pytest.mark.parametrize("study,field", [
    (_bad(tasks={"t": {"name": "no_such_task", "params": {}}}), "tasks.t.name"),
    (_bad(tasks={"t": {"name": "parity", "params": {"n": 0}}}), "tasks.t.params"),
    (_bad(models={"m": {"name": "mlp", "params": {}}}), "measures"),  # no LayerNorm: no blow-up
    (_bad(seeds=list(range(200))), "grid"),
    (_bad(measures=["accuracy", "curvature"]), "measures"),
    (_bad(claims=[dict(TINY["claims"][0], statistic="param_norm")]), "claims.0.statistic"),
    (_bad(claims=[dict(TINY["claims"][0], axis="lr")]), "claims.0.axis"),
    (_bad(colour="blue"), "colour"),
])
def test_bad_study_is_one_line_exit_2_nothing_written(tmp_path, capsys, study, field):
    path = _write(tmp_path, study)
    store, page = tmp_path / "s.sqlite", tmp_path / "page"
    assert main(["study", str(path), "--store", str(store), "--report", str(page)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"error: {field}" in err
    assert not store.exists() and not page.exists()


def test_malformed_yaml_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    assert main(["study", str(path), "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "malformed YAML" in capsys.readouterr().err


def _rows(values_by_gamma):
    return [{"run_id": f"{g}-{i}", "task": "parity", "model": "tf", "gamma": g, "sharpness": v}
            for g, vs in values_by_gamma.items() for i, v in enumerate(vs)]


def test_study_claims_say_pass_fail_and_inconclusive():
    spec = StudySpec(**json.loads(json.dumps(TINY)))
    (slope,) = study_claims(spec)
    assert slope.check(_rows({0.4: [1.0, 1.1, 0.9], 0.6: [2.0, 2.1, 1.9]})).status == PASS
    assert slope.check(_rows({0.4: [2.0, 2.1, 1.9], 0.6: [1.0, 1.1, 0.9]})).status == FAIL
    assert slope.check(_rows({0.4: [1.0, 2.0, 0.5], 0.6: [1.1, 0.4, 2.0]})).status == INCONCLUSIVE
    assert slope.check(_rows({0.4: [1.0], 0.6: [2.0]})).status == INCONCLUSIVE  # too few runs
    means = dict(TINY["claims"][0], name="tiny-means", comparison="means", a=0.6, b=0.4)
    (claim,) = study_claims(StudySpec(**dict(json.loads(json.dumps(TINY)), claims=[means])))
    assert claim.check(_rows({0.4: [1.0, 1.1, 0.9], 0.6: [2.0, 2.1, 1.9]})).status == PASS
    assert claim.check(_rows({0.4: [2.0, 2.1, 1.9], 0.6: [1.0, 1.1, 0.9]})).status == FAIL


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_shipped_examples_are_valid_studies(path):
    spec = load_study(str(path))
    assert spec.question and len(spec.grid()) <= spec.max_runs


def test_a_class_task_study_runs_its_image_measures(tmp_path, capsys):
    study = {"name": "tiny-images", "question": "do the image measures run?",
             "tasks": {"img": {"name": "synthetic_images", "params": {"size": 8, "classes": 3,
                                                                      "train_size": 64}}},
             "models": {"cnn": {"name": "image_cnn", "params": {"channels": 4, "hidden": 8}}},
             "seeds": [0], "train": {"steps": 5, "batch": 16, "loss": "ce", "eval_every": 5},
             "measures": ["accuracy", "tokenwise", "weight_noise", "param_norm", "sharpness"],
             "measure": {"batches": 1, "batch": 32, "draws": 2}}
    path = _write(tmp_path, study)
    argv = ["study", str(path), "--store", str(tmp_path / "s.sqlite"), "--report",
            str(tmp_path / "page"), "--quiet", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["trained"] == 1
    from biaslab.store import Store

    with Store(str(tmp_path / "s.sqlite")) as store:
        (row,) = store.table("study-tiny-images")
    for column in ("eval_acc", "tokenwise", "weight_noise_l1", "param_norm", "sharpness"):
        assert row[column] == row[column] and row[column] >= 0  # measured, not nan
    study["measures"] = ["mse"]  # a class task has no MSE of labels
    assert main(["study", str(_write(tmp_path, study, "mse.yaml")), "--store",
                 str(tmp_path / "other.sqlite")]) == 2
    assert "error: measures: mse does not apply" in capsys.readouterr().err


def test_parameter_norm_over_stack_takes_scalar_parameters():
    # a ViT's attention temperature is one number per member: [M] in a stack
    import torch

    from biaslab.measure.lift import over_stack
    from biaslab.measure.norms import parameter_norm

    norms = over_stack(parameter_norm, {"w": torch.ones(2, 3), "t": torch.tensor([3.0, 4.0])}, exclude=())
    assert torch.allclose(norms, torch.tensor([12.0, 19.0]).sqrt())
