"""Made-up tables for every Zhang et al. claim (issue 20): each must give PASS, FAIL and
INCONCLUSIVE on the tables below (read by tests/test_claim_verdicts.py)."""


def prow(gamma, depth, seed, sym=0.0, inf=0.0, seen=1.0, lr=2.5e-4):
    return {"gamma": gamma, "depth": depth, "seed": seed, "lr": lr, "symmetric_acc": sym,
            "inferential_acc": inf, "other_acc": max(0.0, 1 - sym - inf), "seen_test_acc": seen,
            "diverged": 0.0}


def phase(gamma, kind, values, depth=2, **extra):
    return [prow(gamma, depth, s, **{kind: v}, **extra) for s, v in enumerate(values, 1)]


def mrow(gamma, seed, solution, sr_wq1=1.5, sr_wem_used=10.0, cond=0.3, fused=0.5, sharp=0.01):
    inf, sym = (1.0, 0.0) if solution == "inferential" else (0.0, 1.0)
    return {"gamma": gamma, "seed": seed, "inferential_acc": inf, "symmetric_acc": sym,
            "seen_test_acc": 1.0, "diverged": 0.0, "sr_wq1": sr_wq1, "sr_wem_used": sr_wem_used,
            "cond_wq1": cond, "fused_c_same": fused, "fused_c_mirror": 0.9, "fused_c_diff": 0.0,
            "sharpness_rel": sharp, "tokenwise_sens": 0.3}


def complexity(gamma8, gamma5, n=3):
    """Mechanism runs: (sr_wq1, sr_wem_used, cond) at gamma 0.8 and at gamma 0.5, n seeds."""
    return ([mrow(0.8, s, "symmetric", *(v + 0.01 * s for v in gamma8)) for s in range(1, n + 1)]
            + [mrow(0.5, s, "symmetric", *(v + 0.01 * s for v in gamma5)) for s in range(1, n + 1)])


def by_solution(inf_values, sym_values, field):
    return ([mrow(0.8, s, "inferential", **{field: v}) for s, v in enumerate(inf_values, 1)]
            + [mrow(0.5, s, "symmetric", **{field: v}) for s, v in enumerate(sym_values, 1)])


def crow(lr, wd, seed, inf, seen=1.0):
    return {"lr": lr, "weight_decay": wd, "seed": seed, "inferential_acc": inf,
            "seen_test_acc": seen, "diverged": 0.0}


def lr_wd(effect_lr, effect_wd, noise=(0.0, 0.01, -0.01)):
    return [crow(lr, wd, s, 0.5 + effect_lr * i + effect_wd * j + noise[s - 1] * (1 + i + j))
            for i, lr in enumerate((5e-5, 6e-4)) for j, wd in enumerate((0.003, 0.3)) for s in (1, 2, 3)]


TABLES = {
    "init-phase-small-gamma-symmetric": {
        "PASS": lambda: phase(0.5, "sym", [0.97, 0.98, 0.99]) + phase(0.5, "sym", [0.95, 0.96, 0.99], depth=3),
        "FAIL": lambda: phase(0.5, "sym", [0.97, 0.98, 0.99]) + phase(0.5, "sym", [0.1, 0.15, 0.2], depth=3),
        "INCONCLUSIVE": lambda: phase(0.5, "sym", [0.6, 0.95, 1.0]),  # mean 0.85, se 0.13: a tie
    },
    "init-phase-large-gamma-inferential": {
        "PASS": lambda: phase(0.8, "inf", [0.96, 0.97, 0.99]),
        "FAIL": lambda: phase(0.8, "inf", [0.1, 0.1, 0.2]) + phase(0.9, "inf", [0.95, 0.97, 0.99]),
        # no valid run found the inferential solution: not testable at this scale
        "INCONCLUSIVE": lambda: phase(0.8, "sym", [0.99, 0.98, 0.97]) + phase(0.5, "sym", [1.0, 1.0, 1.0]),
    },
    "init-phase-very-large-init-fails": {
        "PASS": lambda: phase(0.3, "sym", [0.1, 0.1, 0.1], depth=4, seen=0.4),
        "FAIL": lambda: phase(0.3, "sym", [1.0, 1.0, 1.0], depth=5, seen=0.99),
        "INCONCLUSIVE": lambda: [prow(0.3, 4, s, seen=v) for s, v in enumerate([0.5, 0.95, 1.0], 1)],
    },
    "anchor-small-init-low-complexity-used-rows": {
        "PASS": lambda: complexity((1.3, 7.0, 0.6), (2.0, 14.0, 0.1)),
        "FAIL": lambda: complexity((2.3, 7.0, 0.6), (2.0, 14.0, 0.1)),  # W_Q(1) rank higher at 0.8
        "INCONCLUSIVE": lambda: complexity((1.3, 7.0, 0.6), (2.0, 14.0, 0.1), n=2),  # too few runs
    },
    "anchor-inferential-fused-parallel": {
        "PASS": lambda: by_solution([0.90, 0.92, 0.95], [0.30, 0.35, 0.40], "fused"),
        "FAIL": lambda: by_solution([0.20, 0.22, 0.25], [0.80, 0.82, 0.85], "fused"),
        "INCONCLUSIVE": lambda: by_solution([], [0.30, 0.35, 0.40], "fused"),  # no inferential run
    },
    "anchor-inferential-flatter": {
        "PASS": lambda: by_solution([0.001, 0.0012, 0.0011], [0.010, 0.011, 0.012], "sharp"),
        "FAIL": lambda: by_solution([0.010, 0.011, 0.012], [0.001, 0.0012, 0.0011], "sharp"),
        "INCONCLUSIVE": lambda: by_solution([0.005, 0.010, 0.015], [0.006, 0.011, 0.012], "sharp"),
    },
    "complexity-lr-wd-raise": {
        "PASS": lambda: lr_wd(0.2, 0.2),
        "FAIL": lambda: lr_wd(-0.2, 0.2),  # accuracy falls along the lr axis
        "INCONCLUSIVE": lambda: lr_wd(0.01, 0.2, noise=(0.0, 0.2, -0.2)),  # lr rise within noise
    },
}
