"""Made-up tables for the Vasudeva et al. claims: each must make its claim say the status it is
filed under (tests/test_claim_verdicts.py)."""

from __future__ import annotations

import numpy as np


def vision_rows(sens: dict, fitted: int = 3, sigma: float = 0.5) -> list[dict]:
    """Rows of vision-sensitivity: arch -> its runs' sensitivities; the first ``fitted`` of each
    architecture are fitted."""
    rows = []
    for arch, values in sens.items():
        for i, v in enumerate(values):
            rows.append({"arch": arch, "seed": i, "transformer": float(arch == "vit"),
                         "fitted": float(i < fitted), "sensitivity.claim_sigma": sigma,
                         f"sens_{sigma:g}": v})
    return rows


LOW = [0.010, 0.011, 0.012]
HIGH = [0.030, 0.031, 0.032]

TABLES = {
    "vision-transformer-lowest-sensitivity": {
        "PASS": lambda: vision_rows({"vit": LOW, "cnn": HIGH, "mlp": HIGH}),
        "FAIL": lambda: vision_rows({"vit": HIGH, "cnn": LOW, "mlp": HIGH}),
        # the ViT below the CNN but tied with the MLP (within 2 se)
        "INCONCLUSIVE": lambda: vision_rows({"vit": LOW, "cnn": HIGH,
                                             "mlp": [0.009, 0.0115, 0.0125]}),
    },
}


def reg_rows(values: dict, column: str) -> list[dict]:
    """Rows of sensitivity-regularization: (arch, loss) -> its runs' values of ``column``."""
    return [{"arch": arch, "loss": loss, "seed": i, "fitted": 1.0, "sensitivity.claim_sigma": 0.5,
             column: v} for (arch, loss), vs in values.items() for i, v in enumerate(vs)]


def drop_rows(drops: dict) -> list[dict]:
    """arch -> accuracy drops under corruption (clean accuracy 0.9)."""
    return [{"arch": arch, "loss": "ce", "seed": i, "fitted": 1.0, "test_acc": 0.9,
             "acc_corrupt": 0.9 - d} for arch, ds in drops.items() for i, d in enumerate(ds)]


TIED = [0.011, 0.0095, 0.0125]
ACC_LOW, ACC_HIGH = [0.60, 0.61, 0.62], [0.80, 0.81, 0.82]

TABLES.update({
    "sensreg-lowers-vit-sensitivity": {
        "PASS": lambda: reg_rows({("vit", "sensreg"): LOW, ("vit", "ce"): HIGH}, "sens_0.5"),
        "FAIL": lambda: reg_rows({("vit", "sensreg"): HIGH, ("vit", "ce"): LOW}, "sens_0.5"),
        "INCONCLUSIVE": lambda: reg_rows({("vit", "sensreg"): LOW[:2], ("vit", "ce"): HIGH},
                                         "sens_0.5"),  # too few runs
    },
    "sensreg-raises-vit-noise-accuracy": {
        "PASS": lambda: reg_rows({("vit", "sensreg"): ACC_HIGH, ("vit", "ce"): ACC_LOW}, "acc_noise"),
        "FAIL": lambda: reg_rows({("vit", "sensreg"): ACC_LOW, ("vit", "ce"): ACC_HIGH}, "acc_noise"),
        "INCONCLUSIVE": lambda: reg_rows({("vit", "sensreg"): [0.6, 0.7, 0.8],
                                          ("vit", "ce"): [0.62, 0.7, 0.75]}, "acc_noise"),
    },
    "vit-more-robust-than-cnn": {
        "PASS": lambda: drop_rows({"vit": LOW, "resnet18": HIGH}),
        "FAIL": lambda: drop_rows({"vit": HIGH, "resnet18": LOW}),
        "INCONCLUSIVE": lambda: drop_rows({"vit": LOW, "resnet18": TIED}),
    },
})


# -- grokking: the authors' curve shape, through the phase analysis --------------------------
def authors_curves(fall_after_peak: bool = True, jump: float = 10_000.0, norm_falls: bool = True):
    """Curves of the reference notebook's shape (sheet §5), measured every 10 epochs: train
    accuracy 1 from epoch 300; test accuracy 0.3 until ``jump`` - 500, then up to 1; sensitivity
    spikes early (12 % at 100), dips to 3 % at 500, rises to 9 % at 3000 and falls to 0.8 % by the
    jump (or, ``fall_after_peak`` False, stays at 9 %); weight norm 120 -> 55 by 3000 -> 33
    (or, ``norm_falls`` False, 40 -> 55 -> 70)."""
    e = np.arange(10, jump + 2001, 10, dtype=float)
    train_acc = np.minimum(1.0, e / 300)
    test_acc = np.clip(0.3 + 0.7 * (e - (jump - 500)) / 1000, 0.3, 1.0)
    spike = np.interp(e, [10, 100, 500], [0.05, 0.12, 0.03])
    rise = np.interp(e, [500, 3000], [0.03, 0.09])
    fall = np.interp(e, [3000, jump], [0.09, 0.008]) if fall_after_peak else np.full_like(e, 0.09)
    sens = np.where(e <= 500, spike, np.where(e <= 3000, rise, fall))
    wn = np.interp(e, [10, 3000, jump], [120.0, 55.0, 33.0] if norm_falls else [40.0, 55.0, 70.0])
    return e, train_acc, test_acc, sens, wn


def grokking_rows(shapes: list, norm_falls: bool = True) -> list[dict]:
    """Stored rows of grokking-sensitivity: one per (fall_after_peak, jump) shape."""
    from biaslab.experiments.vasudeva.grokking_phases import analyse_run

    rows = []
    for seed, (falls, jump) in enumerate(shapes):
        r = analyse_run(*authors_curves(falls, jump, norm_falls))
        r.pop("reason")
        rows.append({"seed": seed, **{k: None if isinstance(v, float) and np.isnan(v) else v
                                      for k, v in r.items()}})
    return rows


AUTHORS = [(True, 10_000.0), (True, 9_000.0), (True, 11_000.0)]
FLAT = [(False, 10_000.0), (False, 9_000.0), (False, 11_000.0)]
for _claim in ("grokking-sensitivity-falls", "grokking-sensitivity-leads"):
    TABLES[_claim] = {"PASS": lambda: grokking_rows(AUTHORS), "FAIL": lambda: grokking_rows(FLAT),
                      "INCONCLUSIVE": lambda: grokking_rows(AUTHORS[:2])}  # two grokked runs
TABLES["grokking-weight-norm-falls"] = {
    "PASS": lambda: grokking_rows(AUTHORS),
    "FAIL": lambda: grokking_rows(AUTHORS, norm_falls=False),
    "INCONCLUSIVE": lambda: grokking_rows(AUTHORS[:2] + [(True, 40.0)]),  # one run groks at once
}


# -- sharpness: both forms (sharp_l1, sharp_flip) per cell -------------------------------------
def sharp_rows(cells: dict, **extra) -> list[dict]:
    """(arch, loss) -> sharpness values (the flip form is a tenth of the L1 form)."""
    return [{"arch": arch, "loss": loss, "seed": i, "fitted": 1.0, "sharp_l1": v,
             "sharp_flip": v / 10, **extra} for (arch, loss), vs in cells.items()
            for i, v in enumerate(vs)]


TABLES.update({
    "vit-flatter-than-cnn": {
        "PASS": lambda: sharp_rows({("vit", "ce"): LOW, ("resnet18", "ce"): HIGH,
                                    ("cnn", "ce"): HIGH}),
        "FAIL": lambda: sharp_rows({("vit", "ce"): HIGH, ("resnet18", "ce"): LOW,
                                    ("cnn", "ce"): HIGH}),
        "INCONCLUSIVE": lambda: sharp_rows({("vit", "ce"): LOW, ("resnet18", "ce"): TIED,
                                            ("cnn", "ce"): HIGH}),
    },
    "sensreg-flatter-vit": {
        "PASS": lambda: sharp_rows({("vit", "sensreg"): LOW, ("vit", "ce"): HIGH}),
        "FAIL": lambda: sharp_rows({("vit", "sensreg"): HIGH, ("vit", "ce"): LOW}),
        "INCONCLUSIVE": lambda: sharp_rows({("vit", "sensreg"): LOW, ("vit", "ce"): TIED}),
    },
})


# -- text ------------------------------------------------------------------------------------
def text_rows(cells: dict, train_acc: float = 0.9) -> list[dict]:
    """arch -> sensitivities; the model name follows the label (lstm, roberta*, gpt2)."""
    names = {"lstm": "text_lstm", "gpt2": "gpt2"}
    return [{"arch": a, "model.name": names.get(a, "roberta"), "seed": i, "sensitivity": v,
             "sensitivity_token_weighted": v, "train_acc": train_acc, "min_train_acc": 0.8,
             "diverged": 0.0} for a, vs in cells.items() for i, v in enumerate(vs)]


def lstm_position_rows(end: list, rest: float = 0.02) -> list[dict]:
    """LSTM runs whose last 4 positions flip at ``end[i]`` and positions 5-8 at ``rest``."""
    rows = text_rows({"lstm": [0.03] * len(end)})
    for row, e in zip(rows, end):
        row.update({f"pos_from_end_{k}": e if k <= 4 else rest for k in range(1, 9)})
    return rows


TABLES.update({
    "text-roberta-below-lstm": {
        # the ReLU variant has 2 trained runs: left out, the softmax variant still judged
        "PASS": lambda: text_rows({"lstm": HIGH, "roberta": LOW, "roberta_relu": LOW[:2]}),
        "FAIL": lambda: text_rows({"lstm": LOW, "roberta": HIGH, "roberta_relu": LOW}),
        "INCONCLUSIVE": lambda: text_rows({"lstm": TIED, "roberta": LOW, "roberta_relu": LOW[:2]}),
    },
    "text-lstm-rises-at-end": {
        "PASS": lambda: lstm_position_rows([0.10, 0.11, 0.12]),
        "FAIL": lambda: lstm_position_rows([0.001, 0.002, 0.003]),
        "INCONCLUSIVE": lambda: lstm_position_rows([0.03, 0.01, 0.025]),
    },
})


def completion_rows(cells: dict) -> list[dict]:
    """(target, arch) -> learned-completion sensitivities of fitted runs."""
    return [{"target": t, "arch": a, "seed": i, "as_learned": v, "fitted": 1.0}
            for (t, a), vs in cells.items() for i, v in enumerate(vs)]


TABLES["boolean-completion-transformer-lowest"] = {
    "PASS": lambda: completion_rows({("parity", "transformer"): LOW, ("parity", "mlp"): HIGH,
                                     ("random", "transformer"): LOW, ("random", "mlp"): HIGH}),
    "FAIL": lambda: completion_rows({("parity", "transformer"): LOW, ("parity", "mlp"): HIGH,
                                     ("random", "transformer"): HIGH, ("random", "mlp"): LOW}),
    "INCONCLUSIVE": lambda: completion_rows({("parity", "transformer"): LOW,
                                             ("parity", "mlp"): TIED}),
}


def vocabulary_rows(follows: list, frequent: int = 4) -> list[dict]:
    return [{"task.frequent_count": frequent, "task.sparse_count": 1, "seed": i, "train_acc": 1.0,
             "min_train_acc": 0.99, "diverged": 0.0, "follows_frequent": f}
            for i, f in enumerate(follows)]


TABLES["synthetic-vocabulary"] = {
    "PASS": lambda: vocabulary_rows([0.9, 0.92, 0.95]),
    "FAIL": lambda: vocabulary_rows([0.1, 0.12, 0.15]),
    "INCONCLUSIVE": lambda: vocabulary_rows([0.3, 0.5, 0.8]),
}
TABLES["synthetic-vocabulary-decoupled"] = {
    "PASS": lambda: [dict(r, control="decoupled") for r in vocabulary_rows([0.9, 0.92, 0.95])],
    # frequency wins: the one-position feature's (now frequent) words decide
    "FAIL": lambda: [dict(r, control="decoupled") for r in vocabulary_rows([0.1, 0.12, 0.15])],
    # the main setting's rows alone say nothing about the control
    "INCONCLUSIVE": lambda: vocabulary_rows([0.9, 0.92, 0.95]),
}
