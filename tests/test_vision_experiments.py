"""Vision experiments (Vasudeva et al.): presets, a tiny end-to-end run of each, and the claims'
decision rules on hand-made tables."""

import pytest

from biaslab.errors import InputError
from biaslab.execute import run_experiment
from biaslab.experiments import get_experiment
from biaslab.registry import CLAIMS, load_all
from biaslab.spec import resolve
from biaslab.store import Store

load_all()

TINY_ARCHS = {"vit": {"name": "vit", "params": {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8,
                                                "mlp_dim": 32}},
              "cnn": {"name": "image_cnn", "params": {"channels": 4, "hidden": 16}},
              "mlp": {"name": "image_mlp", "params": {"width": 16}}}
TINY = {"task": {"name": "synthetic_images", "params": {"size": 8, "classes": 3, "train_size": 48}},
        "seeds": [0, 1], "test_examples": 32,
        "train": {"steps": 12, "batch": 16, "eval_every": 6, "eval_batch": 48, "loss": "ce",
                  "converge": "acc", "converge_acc": 0.5},
        "sensitivity": {"sigmas": [0.5, 2.0], "claim_sigma": 2.0, "examples": 12, "draws": 1}}
EXPERIMENTS = ["vision-sensitivity", "sensitivity-regularization",
               "sensitivity-sharpness-architectures"]


def spec_of(name, **over):
    exp = get_experiment(name)
    archs = TINY_ARCHS if name != "sensitivity-regularization" else \
        {k: TINY_ARCHS[k] for k in ("vit", "cnn")}
    return exp, resolve(exp.Spec, name, None, None, {**TINY, "architectures": archs, **over})


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_presets_resolve(name):
    exp = get_experiment(name)
    sizes = {p: len(exp.plan(resolve(exp.Spec, name, p))) for p in ("cpu", "gpu")}
    assert 0 < sizes["cpu"] <= sizes["gpu"]
    with pytest.raises(InputError, match="cifar-10"):  # the paper preset needs CIFAR-10 on disk
        exp.plan(resolve(exp.Spec, name, "paper"))


def _run(name, tmp_path, **over):
    exp, spec = spec_of(name, **over)
    with Store(tmp_path / "s.sqlite") as store:
        out = run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None)
        table = store.table(exp.name)
    return out, table, exp.figures(table)


def test_vision_sensitivity_end_to_end(tmp_path):
    out, table, figs = _run("vision-sensitivity", tmp_path)
    assert out["trained"] == 6 and len(table) == 6
    for r in table:
        assert 0 <= r["sens_0.5"] <= r["sens_2"] + 0.25 and 0 <= r["train_acc"] <= 1
        assert "patch_3" in r and "patch_4" not in r  # 2x2 patches of 4x4 on 8x8 images
    assert set(figs) == {"sensitivity_by_architecture", "sensitivity_by_patch"}
    v = CLAIMS.get("vision-transformer-lowest-sensitivity").check(table)
    assert v.status in ("PASS", "FAIL", "INCONCLUSIVE") and v.numbers["sigma_column"] == "sens_2"


def test_regularization_end_to_end(tmp_path):
    out, table, figs = _run("sensitivity-regularization", tmp_path,
                            corruptions=["gaussian_noise", "contrast"], severities=[1, 5])
    assert len(table) == 8 and {r["loss"] for r in table} == {"ce", "sensreg"}
    assert {r["train.loss"] for r in table} == {"ce", "sensreg"}
    for r in table:
        assert {"acc_noise", "acc_corrupt", "acc_sev1", "acc_sev5", "acc_contrast"} <= set(r)
    assert set(figs) == {"regularization", "corruption_profile"}
    assert all(r["sharp_l1"] > 0 for r in table)  # the paper's sharpness, for sensreg-flatter-vit
    for c in ("sensreg-lowers-vit-sensitivity", "sensreg-raises-vit-noise-accuracy",
              "vit-more-robust-than-cnn", "sensreg-flatter-vit"):
        assert CLAIMS.get(c).check(table).status in ("PASS", "FAIL", "INCONCLUSIVE")


def test_sharpness_end_to_end(tmp_path):
    out, table, figs = _run("sensitivity-sharpness-architectures", tmp_path,
                            sharpness={"draws": 2, "lab_draws": 2})
    assert len(table) == 6 and all(r["sharp_l1"] > 0 for r in table)
    assert set(figs) == {"sensitivity_vs_sharpness"}


# The claims' decision rules are tested on made-up tables in tests/claim_tables/vasudeva.py
# (tests/test_claim_verdicts.py): each must say PASS, FAIL and INCONCLUSIVE.
