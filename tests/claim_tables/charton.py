"""Made-up tables for the Charton claims (lawt-accuracy, lawt-cotraining, failure-anatomy,
ood-eigen-distributions)."""


def acc_rows(task, dim, accs, decides=False, paper_scale=False, enc="p1000"):
    """One row per seed of one (task, size, encoding) cell."""
    return [{"task": task, "task_params.dim": dim, "task_params.encoding": enc,
             "task_params.output_encoding": enc, "seed": s, "acc_5": a, "decides": decides,
             "paper_scale": paper_scale} for s, a in enumerate(accs)]


def learned_tables(task, dim):
    return {"PASS": lambda: acc_rows(task, dim, [0.97, 0.98, 0.96]),
            "FAIL": lambda: acc_rows(task, dim, [0.40, 0.45, 0.42], decides=True),
            # a tie with the bar: within 2 se of 0.90
            "INCONCLUSIVE": lambda: acc_rows(task, dim, [0.86, 0.95, 0.90], decides=True)}


def easy_tables():
    out = {}
    for status, make in learned_tables("transpose", 3).items():
        out[status] = (lambda make=make: make() + acc_rows("matrix_sum", 2, [0.99, 0.98, 0.99]))
    return out


def anatomy_rows(ev=(0.9995, 1.0, 0.9998), nm=(0.99, 0.995, 0.992), gap=(0.01, 0.012, 0.009),
                 acc=0.9, failures=400, successes=3600):
    return [{"seed": s, "task_params.dim": 5, "acc_5": acc, "failures_5": failures,
             "valid_failures_5": failures, "fail5.eigenvalues@2": ev[s], "fail5.norms@5": nm[s],
             "sep5.cond_pred_q.success_p98": 1.03, "sep5.cond_pred_q.failure_p2": 1.03 + gap[s],
             "sep5.cond_pred_q.auroc": 0.99, "sep5.cond_pred_q.n_success": successes,
             "sep5.cond_pred_q.n_failure": failures} for s in range(3)]


def ood_rows(forward, reverse, target="semicircle", own=(0.95, 0.96, 0.94)):
    """Three laplace- and three semicircle-trained seeds; ``forward`` = laplace -> target,
    ``reverse`` = semicircle -> laplace (Wigner claim) or semicircle -> target."""
    rows = []
    for s in range(3):
        lap = {"task_params.distribution": "laplace", "seed": s, "laplace.acc_5": own[s],
               f"{target}.acc_5": forward[s]}
        sem = {"task_params.distribution": "semicircle", "seed": s, "semicircle.acc_5": own[s]}
        sem["laplace.acc_5" if target == "semicircle" else f"{target}.acc_5"] = reverse[s]
        if target == "semicircle":
            lap["semicircle.acc_5"] = forward[s]
        else:
            lap["semicircle.acc_5"] = 0.9
            sem["laplace.acc_5"] = 0.3
        rows += [lap, sem]
    return rows


def ood_tables(target):
    return {"PASS": lambda: ood_rows((0.9, 0.85, 0.88), (0.3, 0.35, 0.25), target),
            "FAIL": lambda: ood_rows((0.3, 0.35, 0.25), (0.9, 0.85, 0.88), target),
            "INCONCLUSIVE": lambda: ood_rows((0.6, 0.4, 0.5), (0.5, 0.45, 0.55), target)}


def inversion_rows(rho=(-0.9, -0.8, -0.95), share=(0.5, 0.6, 0.45), acc=0.8):
    return [{"seed": s, "acc_5": acc, "failures_5": 60, "cond_acc_spearman": rho[s],
             "fail5.top_decile_share": share[s]} for s in range(3)]


def cotraining_rows(t_accs, a_accs, paper_scale=False):
    """Three seeds of one model co-trained on T and A: each code's accuracy at 5%."""
    return [{"task": "cotraining", "task_params.tasks": "TA", "task_params.dim": 2,
             "task_params.encoding": "p10", "task_params.output_encoding": "p10", "seed": s,
             "T.acc_5": t, "A.acc_5": a, "acc_5": (t + a) / 2, "decides": paper_scale,
             "paper_scale": paper_scale} for s, (t, a) in enumerate(zip(t_accs, a_accs))]


TABLES = {
    "lawt-cotraining-learns-every-task": {
        "PASS": lambda: cotraining_rows((0.99, 0.98, 0.99), (0.95, 0.96, 0.94)),
        # transposition learned, addition far below at paper scale
        "FAIL": lambda: cotraining_rows((0.99, 0.98, 0.99), (0.40, 0.45, 0.42), paper_scale=True),
        # addition ties with the 0.90 bar
        "INCONCLUSIVE": lambda: cotraining_rows((0.99, 0.98, 0.99), (0.86, 0.95, 0.90),
                                                paper_scale=True)},
    "wimtd-inversion-fails-when-ill-conditioned": {
        "PASS": lambda: inversion_rows(),
        "FAIL": lambda: inversion_rows(rho=(0.7, 0.8, 0.6)),
        "INCONCLUSIVE": lambda: inversion_rows(rho=(-0.5, 0.4, -0.1))},
    "lawt-easy-tasks-learned": easy_tables(),
    "lawt-eigenvalues-5x5": learned_tables("eigenvalues", 5),
    "lawt-matrix-product-learned": learned_tables("matrix_product", 5),
    "lawt-eigenvectors-learned": learned_tables("eigenvectors", 5),
    "lawt-inversion-learned": learned_tables("invert_matrix", 5),
    "lawt-singular-learned": learned_tables("singularvectors", 4),
    "wimtd-failures-roughly-right": {
        "PASS": lambda: anatomy_rows(),
        "FAIL": lambda: anatomy_rows(nm=(0.95, 0.96, 0.94)),
        # the norm share ties with the notebook's 0.985 bar
        "INCONCLUSIVE": lambda: anatomy_rows(nm=(0.975, 0.995, 0.985))},
    "wimtd-cond-separates": {
        "PASS": lambda: anatomy_rows(),
        "FAIL": lambda: anatomy_rows(gap=(-0.02, -0.015, -0.03)),
        "INCONCLUSIVE": lambda: anatomy_rows(gap=(0.01, -0.01, 0.002))},
    "ood-laplace-to-wigner": ood_tables("semicircle"),
    "ood-laplace-to-positive": ood_tables("positive"),
}
