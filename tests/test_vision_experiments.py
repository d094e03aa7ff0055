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
    for c in ("sensreg-lowers-vit-sensitivity", "sensreg-raises-vit-noise-accuracy",
              "vit-more-robust-than-cnn"):
        assert CLAIMS.get(c).check(table).status in ("PASS", "FAIL", "INCONCLUSIVE")


def test_sharpness_end_to_end(tmp_path):
    out, table, figs = _run("sensitivity-sharpness-architectures", tmp_path,
                            sharpness={"draws": 2, "lab_draws": 2})
    assert len(table) == 6 and all(r["sharp_l1"] > 0 for r in table)
    assert set(figs) == {"sensitivity_vs_sharpness"}


# -- decision rules on hand-made tables ----------------------------------------------------------------
def vrow(arch, sens, transformer=None, fitted=1.0):
    return {"arch": arch, "sens_0.5": sens, "sensitivity.claim_sigma": 0.5, "fitted": fitted,
            "transformer": float(arch in ("vit", "simple_vit") if transformer is None else transformer)}


def test_vision_claim_rule():
    check = CLAIMS.get("vision-transformer-lowest-sensitivity").check
    t = [vrow("vit", 0.001 + 1e-4 * s) for s in range(3)] + \
        [vrow("resnet18", 0.08 + 0.01 * s) for s in range(3)] + [vrow("mlp", 0.05) for _ in range(3)]
    assert check(t).status == "PASS"
    t2 = t + [vrow("cnn", 0.0005) for _ in range(3)]
    assert check(t2).status == "FAIL"
    t3 = [vrow("vit", v) for v in (0.01, 0.03, 0.05)] + [vrow("mlp", 0.04) for _ in range(3)]
    assert check(t3).status == "INCONCLUSIVE"  # lowest, but within two standard errors
    assert check(t[:4]).status == "INCONCLUSIVE"  # one fitted resnet run


def rrow(arch, loss, sens, acc_noise, test_acc=0.9, acc_corrupt=0.7):
    return {"arch": arch, "loss": loss, "sens_0.5": sens, "sensitivity.claim_sigma": 0.5,
            "acc_noise": acc_noise, "test_acc": test_acc, "acc_corrupt": acc_corrupt, "fitted": 1.0}


def test_regularization_claim_rules():
    t = [rrow("vit", "ce", 0.05 + 0.001 * s, 0.6 + 0.01 * s, acc_corrupt=0.8) for s in range(3)]
    t += [rrow("vit", "sensreg", 0.01 + 0.001 * s, 0.7 + 0.01 * s) for s in range(3)]
    t += [rrow("cnn", "ce", 0.1, 0.5, acc_corrupt=0.6 + 0.01 * s) for s in range(3)]
    assert CLAIMS.get("sensreg-lowers-vit-sensitivity").check(t).status == "PASS"
    assert CLAIMS.get("sensreg-raises-vit-noise-accuracy").check(t).status == "PASS"
    assert CLAIMS.get("vit-more-robust-than-cnn").check(t).status == "PASS"
    swapped = [dict(r, loss={"ce": "sensreg", "sensreg": "ce"}[r["loss"]]) if r["arch"] == "vit"
               else r for r in t]
    assert CLAIMS.get("sensreg-lowers-vit-sensitivity").check(swapped).status == "FAIL"
    assert CLAIMS.get("sensreg-raises-vit-noise-accuracy").check(swapped).status == "FAIL"


def test_sharpness_claim_rule():
    check = CLAIMS.get("sensitivity-tracks-sharpness").check
    archs = ["vit", "cnn", "mlp", "resnet18"]
    t = [{"arch": archs[i % 4], "sens_0.5": 0.01 * i, "sharp_l1": 0.1 * i + 0.01,
          "sharp_flip": 0.0, "sharp_loss": 0.0, "fitted": 1.0, "sensitivity.claim_sigma": 0.5}
         for i in range(12)]
    assert check(t).status == "PASS"
    flipped = [dict(r, sharp_l1=-r["sharp_l1"]) for r in t]
    assert check(flipped).status == "FAIL"
    assert check(t[:5]).status == "INCONCLUSIVE"
