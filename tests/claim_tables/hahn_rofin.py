"""Made-up tables for every Hahn & Rofin claim: for each, a table that must PASS, one that must
FAIL and one that must be INCONCLUSIVE (tests/test_claim_verdicts.py). The row builders are
shared with the wing's rule tests."""


# -- training-dynamics ---------------------------------------------------------------------------
def dyn_row(before, after, drop=100, post_slope=0.0, wd=0.1, final_loss=1e-5, every=25,
            window=150, start=-1000, end=1100):
    """A run aligned at convergence: loss on the 0.25 plateau until ``drop`` steps before c, then
    falling to 0.001; the measure at ``before`` until the drop, ramping to ``after`` at c, then
    drifting by ``post_slope`` per step after it."""
    row = {"window": window, "weight_decay": wd, "align_step": 800, "final_loss": final_loss}
    for off in range(start, end + 1, every):
        if off < -drop:
            loss, v = 0.25, before
        elif off < 0:
            frac = (off + drop) / drop
            loss, v = 0.25 - 0.249 * frac, before + (after - before) * frac
        else:
            loss, v = 0.001, after + post_slope * off
        row[f"aligned.loss.{off:+d}"] = loss
        row[f"aligned.sharpness_x4.{off:+d}"] = v
        row[f"aligned.blowup.{off:+d}"] = v
    return row


ABRUPT = {
    "PASS": lambda: [dyn_row(0.1 * (1 + 0.01 * s), 0.4) for s in range(5)],
    # no step at the transition, a fast rise after it: less change across than in the control
    "FAIL": lambda: [dyn_row(1.0, 1.0, post_slope=0.01 + 1e-4 * s) for s in range(5)],
    "INCONCLUSIVE": lambda: [dyn_row(1.0, 4.0) for _ in range(3)]
    + [dyn_row(1.0, 1.0 + 0.001 * s, post_slope=0.003) for s in range(3)],
}


def post_run(norm_end, blow_end, wd=0.1, norm0=20.0, blow0=2.0, a=200, b=1000, every=25):
    """Norm and blow-up moving linearly from (norm0, blow0) at c + a to the ends at c + b."""
    row = {"weight_decay": wd, "post_start": a, "post_end": b, "window": 100}
    for off in range(-500, b + 1, every):
        t = min(max((off - a) / (b - a), 0.0), 1.0)
        row[f"aligned.norm_sq.{off:+d}"] = (norm0 + (norm_end - norm0) * t) ** 2
        row[f"aligned.blowup.{off:+d}"] = blow0 + (blow_end - blow0) * t
    return row


POST = {
    "PASS": lambda: [post_run(14.0 + 0.2 * s, 3.5 + 0.1 * s) for s in range(5)],
    "FAIL": lambda: [post_run(24.0 + 0.2 * s, 3.5 + 0.1 * s) for s in range(5)],
    "INCONCLUSIVE": lambda: [post_run(14.0, 3.0), post_run(14.5, 3.1), post_run(28.0, 1.3),
                             post_run(27.5, 1.35)],
}


# -- sharpness over n (sharpness-scaling, scratchpad) --------------------------------------------
def scaling_rows(slopes: dict, noise=0.01, ns=(4, 6, 8), seeds=3):
    return [{"sweep": "A", "target": t, "n": n, "converged": 1.0,
             "sharpness_x4": 0.1 + b * n + noise * (s - 1) * (1 if n % 4 else -1)}
            for t, b in slopes.items() for n in ns for s in range(seeds)]


def pad_rows(parity_slope, pad_slope, noise=0.005, seeds=3):
    rows = []
    for kind, b, ns in (("parity", parity_slope, (4, 6, 8)), ("scratchpad", pad_slope, (4, 8, 12))):
        rows += [{"kind": kind, "n": n, "converged": 1.0,
                  "sharpness_x4": 0.1 + b * n + noise * (s - 1)} for n in ns for s in range(seeds)]
    return rows


# -- norm-blowup-tradeoff ------------------------------------------------------------------------
def plane(parity_blowup, other_blowup, ns=(4, 6, 8), jitter=0.02, targets=("majority", "first")):
    """Converged runs, 4 per (target, n) (weight decays 0-0.3), norm 10 with small jitter;
    blow-up given per n by the functions for PARITY and the other targets."""
    rows = []
    for n in ns:
        for i, wd in enumerate((0.0, 0.1, 0.2, 0.3)):
            f = 1 + jitter * (i - 1.5)
            rows.append({"target": "parity", "n": n, "weight_decay": wd, "converged": 1.0,
                         "param_norm": 10.0, "blowup": parity_blowup(n) * f, "norm_ratio": 1.25})
            for t in targets:
                rows.append({"target": t, "n": n, "weight_decay": wd, "converged": 1.0,
                             "param_norm": 10.0, "blowup": other_blowup(n) * f, "norm_ratio": 1.25})
    return rows


# -- E5: lowsens-generalization, sensitivity-sharpness -------------------------------------------
def lowsens_rows(learned, random=5.0, spread=0.1, k=4, ms=(128, 256)):
    return [{"train_size": m, "fitted": 1.0, "as_learned": learned + spread * (s - 1.5),
             "as_random": random, "lowdeg_learned": 0.9 - 0.1 * learned + 0.01 * s,
             "lowdeg_random": 0.9 - 0.1 * random} for m in ms for s in range(k)]


def refit_rows(learned, random, slope=0.1, k=4):
    rows = []
    for kind, base in (("learned", learned), ("random", random)):
        for s in range(k):
            a = (3.0 if kind == "learned" else 5.0) + 0.2 * s
            rows.append({"kind": kind, "converged": 1.0, "source_fitted": 1.0, "as_table": a,
                         "sharpness_x4": base + slope * (a - 4.0) + 0.01 * s})
    return rows


def lengthgen_rows(maj, par, spread=0.02, k=3):
    return [{"positions": pos, "target": t, "fitted": 1.0, "acc_2n": acc + spread * (s - 1),
             "len_2n": 8, "test_lengths": [4, 8], "acc_len_4": 1.0, "acc_len_8": acc}
            for pos in ("learned", "sinusoidal") for t, acc in (("majority", maj), ("parity", par))
            for s in range(k)]


TABLES = {
    "abrupt-sharpness-change-at-convergence": ABRUPT,
    "abrupt-blowup-change-at-convergence": ABRUPT,
    "norm-falls-blowup-rises-after-convergence": POST,
    "sharpness-grows-for-parity": {
        "PASS": lambda: scaling_rows({"parity": 0.05, "majority": 0.005, "first": 0.004}),
        "FAIL": lambda: scaling_rows({"parity": 0.02, "majority": 0.06, "first": 0.0}),
        "INCONCLUSIVE": lambda: scaling_rows({"parity": 0.01, "majority": 0.008, "first": 0.0},
                                             noise=0.2)},
    "scratchpad-sharpness-flat": {
        "PASS": lambda: pad_rows(0.05, -0.002),
        "FAIL": lambda: pad_rows(0.01, 0.05),
        "INCONCLUSIVE": lambda: pad_rows(0.01, 0.009, noise=0.2)},
    "parity-further-out-in-norm-blowup-plane": {
        "PASS": lambda: plane(lambda n: 0.5 * n, lambda n: 1.0),
        "FAIL": lambda: plane(lambda n: 2.0 + 0.1 * n, lambda n: 1.0 if n < 8 else 8.0),
        "INCONCLUSIVE": lambda: plane(lambda n: 1.0 + 0.2 * n, lambda n: 1.0 + 0.2 * n)},
    "lowsens-learned-below-random": {
        "PASS": lambda: lowsens_rows(3.0),
        "FAIL": lambda: lowsens_rows(5.5),
        "INCONCLUSIVE": lambda: lowsens_rows(4.95, spread=1.0)},
    "lowsens-learned-low-degree": {
        "PASS": lambda: lowsens_rows(3.0),
        "FAIL": lambda: lowsens_rows(6.0),
        "INCONCLUSIVE": lambda: lowsens_rows(3.0, k=2)},
    "sharpness-rises-with-sensitivity": {
        "PASS": lambda: refit_rows(0.2, 0.6),
        "FAIL": lambda: refit_rows(0.6, 0.2, slope=-0.1),
        "INCONCLUSIVE": lambda: refit_rows(0.2, 0.6, k=2)},
    "majority-extends-parity-fails": {
        "PASS": lambda: lengthgen_rows(0.95, 0.5),
        "FAIL": lambda: lengthgen_rows(0.5, 0.95),
        "INCONCLUSIVE": lambda: lengthgen_rows(0.6, 0.59, spread=0.2)},
}
