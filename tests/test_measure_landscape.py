"""Loss-landscape measures against exact references: finite differences, full Hessians, and a
quadratic loss whose sharpness is known in closed form."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from biaslab import rng
from biaslab.measure import landscape as L
from biaslab.models import POSITION_PREFIX, build_model
from biaslab.tasks import make_task
from biaslab.train import Member, Stack
from biaslab.train.losses import get_loss

CFG = {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8}
mse = get_loss("mse").fn


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The models here are tiny: intra-op threads only add barriers, and on a busy 2-core
    # machine those barriers made each Hessian-vector product ~100x slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def task():
    return make_task("parity", {"n": 4})


@pytest.fixture(scope="module")
def model(task):
    return build_model("transformer", CFG, task, seed=0).double()


@pytest.fixture(scope="module")
def batch(task):
    return task.sample({}, rng.key_of(1), 32)


def flat_loss(model, batch):
    """The batch loss as a function of one flat parameter vector, and that vector."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    x, y = batch

    def f(v):
        ps, i = {}, 0
        for n, s in zip(names, shapes):
            ps[n] = v[i:i + s.numel()].view(s)
            i += s.numel()
        return mse(functional_call(model, ps, (x,)), y)

    return f, flat


def exact_hessian(model, batch):
    f, flat = flat_loss(model, batch)
    # torch.func's second derivative of the fused layer_norm is wrong in torch 2.13 (see
    # landscape.composite_layer_norm); the reference Hessian uses the composite form too, and
    # test_exact_hessian_matches_finite_differences checks that this reference is right.
    with L.composite_layer_norm():
        return hessian(f)(flat)


@pytest.fixture(scope="module")
def H_random(model, batch):
    """Exact Hessian at init against parity targets (indefinite)."""
    return exact_hessian(model, batch)


@pytest.fixture(scope="module")
def tiny_teacher(task):
    """A smaller transformer (153 parameters) whose targets are its own outputs: theta is a
    minimum, so H is the PSD Gauss-Newton matrix and Hutchinson's variance is moderate."""
    m = build_model("transformer", {"d_model": 4, "n_heads": 1, "n_layers": 1, "d_ff": 4}, task,
                    seed=0).double()
    x, _ = task.sample({}, rng.key_of(2), 8)
    with torch.no_grad():
        b = (x, m(x))
    return m, b, exact_hessian(m, b)


def grad_at(model, batch, shift: dict, h: float) -> dict:
    """Plain-autograd gradient of the batch loss at theta + h * shift."""
    x, y = batch
    params = {n: (p.detach() + h * shift[n]).requires_grad_() for n, p in model.named_parameters()}
    loss = mse(functional_call(model, params, (x,)), y)
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


# -- Hessian-vector products --------------------------------------------------------------------
def test_hvp_matches_finite_differences(model, batch):
    g = torch.Generator().manual_seed(0)
    v = {n: torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in model.named_parameters()}
    hv = L.hvp(model, mse, batch, v)
    h = 1e-5
    gp, gm = grad_at(model, batch, v, h), grad_at(model, batch, v, -h)
    fd = torch.cat([((gp[n] - gm[n]) / (2 * h)).reshape(-1) for n in v])
    ours = torch.cat([hv[n].reshape(-1) for n in v])
    assert ((ours - fd).norm() / fd.norm()).item() < 1e-4


def test_hvp_restricted_to_named_parameters(model, batch, H_random):
    # v naming only some parameters gives that diagonal block of H.
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for p in model.parameters()]
    start = dict(zip(names, [sum(sizes[:i]) for i in range(len(sizes))]))
    sub = ["layers.0.ff1.weight", "layers.0.ln1.weight"]
    g = torch.Generator().manual_seed(1)
    v = {n: torch.randn(dict(model.named_parameters())[n].shape, generator=g,
                        dtype=torch.float64) for n in sub}
    hv = L.hvp(model, mse, batch, v)
    for a in sub:
        sa = slice(start[a], start[a] + v[a].numel())
        ref = sum(H_random[sa, start[b]:start[b] + v[b].numel()] @ v[b].reshape(-1) for b in sub)
        torch.testing.assert_close(hv[a].reshape(-1), ref)


def test_vmapped_hvp_matches_exact_hessian(model, batch, H_random):
    # The path Hutchinson and the stacks take: hvp vmapped over many tangents at once.
    g = torch.Generator().manual_seed(2)
    Z = torch.randn(6, H_random.shape[0], generator=g, dtype=torch.float64)
    params = dict(model.named_parameters())

    def one(z):
        v, i = {}, 0
        for n, p in params.items():
            v[n] = z[i:i + p.numel()].view_as(p)
            i += p.numel()
        return torch.cat([t.reshape(-1) for t in L.hvp(model, mse, batch, v).values()])

    torch.testing.assert_close(torch.vmap(one)(Z), Z @ H_random)


def test_exact_hessian_matches_finite_differences(model, batch, H_random):
    # The reference Hessian itself: symmetric and equal to finite differences of gradients.
    assert (H_random - H_random.T).abs().max() < 1e-10
    names = [n for n, _ in model.named_parameters()]
    for i in [5, 150, 200, 460, 490]:  # token embedding, key, value, LN gain, head columns
        e = torch.zeros(H_random.shape[0], dtype=torch.float64)
        e[i] = 1.0
        shift, j = {}, 0
        for n, p in model.named_parameters():
            shift[n] = e[j:j + p.numel()].view_as(p)
            j += p.numel()
        gp, gm = grad_at(model, batch, shift, 1e-5), grad_at(model, batch, shift, -1e-5)
        fd = torch.cat([((gp[n] - gm[n]) / 2e-5).reshape(-1) for n in names])
        assert fd.norm() > 0 and ((fd - H_random[:, i]).norm() / fd.norm()) < 1e-6


# -- Hutchinson trace ---------------------------------------------------------------------------
def test_hutchinson_trace_matches_exact(tiny_teacher):
    model, b, H = tiny_teacher
    probes = 10_000
    s = L.hessian_trace(model, mse, b, probes=probes, key=7, chunk=2500, return_samples=True)
    exact = H.trace()
    # Rademacher variance per probe is 2 (||H||_F^2 - sum H_ii^2); with 10^4 probes the standard
    # error is ~0.9% of the trace here, so 5% is a > 5 sigma band (and 3 se a 2.6% band).
    var = 2 * (H.pow(2).sum() - H.diag().pow(2).sum())
    se = (var / probes).sqrt()
    assert 5 * se < 0.05 * exact
    assert abs(s.mean() - exact) < 3 * se
    assert abs(s.mean() - exact) < 0.05 * exact
    # The samples' spread is the theoretical one (a wrong probe distribution would change it).
    assert abs(s.var() / var - 1) < 0.15
    m = L.hessian_trace(model, mse, b, probes=probes, key=7, chunk=2500)
    torch.testing.assert_close(m, s.mean())


# -- Lanczos ------------------------------------------------------------------------------------
def test_top_eigenvalues_match_eigvalsh(model, batch, H_random):
    exact = torch.linalg.eigvalsh(H_random).flip(0)[:3]
    top1 = L.hessian_top_eigenvalues(model, mse, batch, k=1, iters=40, key=3)
    top3 = L.hessian_top_eigenvalues(model, mse, batch, k=3, iters=40, key=3)
    assert top1.shape == (1,) and top3.shape == (3,)
    assert ((top3 - exact).abs() / exact.abs()).max() < 1e-6
    assert abs(top1[0] - exact[0]) / exact[0] < 1e-6


def test_lanczos_survives_low_rank_hessian():
    # A rank-2 quadratic in 6 parameters: Krylov space breaks down after 3 steps; the restart
    # must keep the Ritz values right instead of producing NaNs.
    class Quad(nn.Module):
        def __init__(self):
            super().__init__()
            self.theta = nn.Parameter(torch.zeros(6, dtype=torch.float64))

        def forward(self, x):
            return self.theta

    A = torch.zeros(6, 6, dtype=torch.float64)
    A[0, 0], A[3, 3] = 5.0, 2.0
    ev = L.hessian_top_eigenvalues(Quad(), lambda t, _: 0.5 * t @ A @ t, (None, None), k=3,
                                   iters=6, key=0)
    torch.testing.assert_close(ev, torch.tensor([5.0, 2.0, 0.0], dtype=torch.float64))


# -- perturbation sharpness ---------------------------------------------------------------------
def test_sharpness_of_quadratic_is_half_sigma2_trace():
    # Least squares at its exact minimum: L(theta + eps) = 0.5 eps^T H eps, so the expected
    # sharpness is sigma^2/2 tr(H) and its variance over one draw is sigma^4/2 ||H||_F^2.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 4, generator=g, dtype=torch.float64)
    lin = nn.Linear(4, 2).double()
    Y = lin(X).detach()
    Xa = torch.cat([X, torch.ones(64, 1, dtype=torch.float64)], 1)
    block = 2.0 / Y.numel() * Xa.T @ Xa  # per output unit; H = blockdiag(block, block)
    trace, fro2 = 2 * block.trace(), 2 * block.pow(2).sum()
    sigma, draws = 0.05, 4000
    s = L.perturbation_sharpness(lin, mse, (X, Y), sigma=sigma, draws=draws, key=11, chunk=1000)
    expected = sigma**2 / 2 * trace
    se = sigma**2 / 2 * math.sqrt(2 * fro2 / draws)
    assert 4 * se < 0.05 * expected  # the test can tell a wrong scale apart
    assert abs(s - expected) < 4 * se


def test_sharpness_keys_batches_and_options(model, batch):
    b2 = (batch[0][:16], batch[1][:16])
    s = L.perturbation_sharpness(model, mse, batch, key=5)
    assert s.dim() == 0 and torch.isfinite(s)
    assert L.perturbation_sharpness(model, mse, batch, key=5) == s  # deterministic
    assert L.perturbation_sharpness(model, mse, batch, key=6) != s  # key matters
    assert L.perturbation_sharpness(model, mse, batch, key=torch.tensor(5)) == s
    torch.testing.assert_close(L.perturbation_sharpness(model, mse, batch, key=5, label_scale=4),
                               4 * s)
    # A list of batches: the mean over batches, each with fresh noise ...
    fresh = L.perturbation_sharpness(model, mse, [batch, batch], key=5)
    assert fresh != s
    # ... unless same_noise (the reference quirk), where identical batches give identical terms.
    same1 = L.perturbation_sharpness(model, mse, [batch], key=5, same_noise=True)
    same2 = L.perturbation_sharpness(model, mse, [batch, batch], key=5, same_noise=True)
    torch.testing.assert_close(same1, same2)
    mixed = L.perturbation_sharpness(model, mse, [batch, b2], key=5, same_noise=True)
    alone = L.perturbation_sharpness(model, mse, [b2], key=5, same_noise=True)
    torch.testing.assert_close(mixed, (same1 + alone) / 2)
    # Draw chunking does not change the numbers.
    torch.testing.assert_close(L.perturbation_sharpness(model, mse, batch, key=5, chunk=3), s)


def test_sharpness_excludes_positions_by_default(model, batch):
    names = [n for n, _ in model.named_parameters()]
    assert any(n.startswith(POSITION_PREFIX) for n in names)
    others = [n for n in names if not n.startswith(POSITION_PREFIX)]
    # Excluding every other parameter on top of the default leaves nothing to perturb ...
    zero = L.perturbation_sharpness(model, mse, batch, key=5,
                                    exclude=(POSITION_PREFIX, *others))
    assert zero == 0
    # ... while perturbing the positions alone does change the loss.
    only_pos = L.perturbation_sharpness(model, mse, batch, key=5, exclude=tuple(others))
    assert only_pos != 0
    # A parameter's noise does not depend on which other parameters are perturbed.
    full = L.perturbation_sharpness(model, mse, batch, key=5, exclude=())
    default = L.perturbation_sharpness(model, mse, batch, key=5)
    assert full != default


# -- loss slices --------------------------------------------------------------------------------
def test_loss_slice_filter_normalized():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(32, 3, generator=g, dtype=torch.float64)
    Y = torch.randn(32, 2, generator=g, dtype=torch.float64)
    lin = nn.Linear(3, 2).double()
    alphas = torch.tensor([-1.0, 0.0, 0.5, 2.0], dtype=torch.float64)
    out = L.loss_slice(lin, mse, (X, Y), alphas, key=4)
    assert out.shape == (4,)
    torch.testing.assert_close(out[1], mse(lin(X), Y).detach())
    # The direction: weight rows rescaled to the weight rows' norms, bias direction zero.
    params = {n: p.detach() for n, p in lin.named_parameters()}
    d = L.random_direction(params, list(params), rng.key_of(4), True)
    torch.testing.assert_close(d["weight"].norm(dim=1), params["weight"].norm(dim=1))
    assert (d["bias"] == 0).all()
    ref = torch.stack([mse(X @ (params["weight"] + a * d["weight"]).T + params["bias"], Y)
                       for a in alphas])
    torch.testing.assert_close(out, ref)
    # Without filter normalisation the direction is unit-norm and the bias moves too.
    raw = L.random_direction(params, list(params), rng.key_of(4), False)
    torch.testing.assert_close(torch.sqrt(sum(t.pow(2).sum() for t in raw.values())),
                               torch.tensor(1.0, dtype=torch.float64))
    assert (raw["bias"] != 0).all()


# -- stacked variants ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(task):
    st = Stack("transformer", CFG, task, [Member(seed=s) for s in range(3)])
    # float64 so that vmapped and looped results agree to rounding
    st.params = {k: v.double() for k, v in st.params.items()}
    st.buffers = {k: v.double() for k, v in st.buffers.items()}
    return st


def members(stack):
    return [stack.member(i).double() for i in range(stack.M)]


def test_stacked_equal_per_member(stack, task, batch):
    keys = rng.derive(rng.key_of(9), torch.arange(stack.M))  # per-member batches
    xs, ys = torch.vmap(lambda k: task.sample({}, k, 16))(keys)
    per = [(xs[i], ys[i]) for i in range(stack.M)]
    mods = members(stack)

    s = L.perturbation_sharpness(stack, mse, [(xs, ys), batch], key=2, label_scale=4)
    ref = [L.perturbation_sharpness(m, mse, [per[i], batch], key=2, label_scale=4)
           for i, m in enumerate(mods)]
    assert s.shape == (3,)
    torch.testing.assert_close(s, torch.stack(ref))

    # An [M] key tensor gives each member its own noise.
    mk = torch.tensor([4, 5, 6])
    s = L.perturbation_sharpness(stack, mse, batch, key=mk)
    torch.testing.assert_close(
        s, torch.stack([L.perturbation_sharpness(m, mse, batch, key=int(mk[i]))
                        for i, m in enumerate(mods)]))

    t = L.hessian_trace(stack, mse, (xs, ys), probes=8, key=3)
    torch.testing.assert_close(
        t, torch.stack([L.hessian_trace(m, mse, per[i], probes=8, key=3)
                        for i, m in enumerate(mods)]))

    e = L.hessian_top_eigenvalues(stack, mse, batch, k=2, iters=10, key=1)
    assert e.shape == (3, 2)
    torch.testing.assert_close(
        e, torch.stack([L.hessian_top_eigenvalues(m, mse, batch, k=2, iters=10, key=1)
                        for m in mods]))

    alphas = torch.linspace(-0.5, 0.5, 5)
    sl = L.loss_slice(stack, mse, batch, alphas, key=8)
    torch.testing.assert_close(
        sl, torch.stack([L.loss_slice(m, mse, batch, alphas, key=8) for m in mods]))

    v = {n: torch.ones_like(p) for n, p in stack.params.items() if "ff" in n}
    hv = L.hvp(stack, mse, batch, v)
    for i, m in enumerate(mods):
        one = L.hvp(m, mse, batch, {n: t[i] for n, t in v.items()})
        for n in v:
            torch.testing.assert_close(hv[n][i], one[n])


def test_registered():
    from biaslab.registry import MEASURES

    for name in ["perturbation_sharpness", "hessian_trace", "hessian_top_eigenvalues",
                 "loss_slice"]:
        assert name in MEASURES
        assert MEASURES.get(name).lifts_stacks
