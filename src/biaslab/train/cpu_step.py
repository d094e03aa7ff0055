"""The training step on a CPU, eager: every member's AdamW update in place, by torch's fused kernel.

The functional update (``optim.adamw_step``) makes about a dozen passes over the stack's [M, P]
buffers and writes fresh ones; that is the right shape for a compiled graph or a GPU, but on a
CPU each pass streams megabytes through the cache. There the update was the largest cost the
lab added to a plain PyTorch loop (the grokking model: 1.8-2.0 ms per member-step against 1.2-1.4 ms
for ``torch.optim.AdamW``; docs/benchmarks.md, issue 26). Here each member's row of the flat
buffers is updated in place by ``torch._fused_adamw_``, the kernel of
``torch.optim.AdamW(fused=True)``: one pass that reads the parameter, gradient and moments once
and writes them back. So on a CPU a member's update is, bit for bit, what
``torch.optim.AdamW(fused=True)`` does to that member alone (tests/test_cpu_step.py, which
would also catch a torch upgrade that changed this private op's signature or arithmetic).

In the looped mapping (``chunk`` 1: members with large buffers) each member is updated right
after its own backward pass, while its gradients are still in cache.

Host reads are free on a CPU (no device to wait for), so the step reads what it needs there:
each member's learning rate and weight decay (the kernel takes them as numbers), and whether a
member updates at all. A member that is inactive (converged, diverged) or whose loss or gradient
is not finite is skipped: its parameters, moments and step count stay as they were.
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch

from .. import rng
from .members import _autograd_value_and_grad, _member, map_members
from .optim import AdamWState, flatten, unflatten


class InPlaceBuffers:
    """The flat parameter buffer and optimizer state a step may update in place: the ones it
    returned last. Anything else (the stack's own parameters, a state after compaction) is
    copied once first, so the caller's tensors are never changed behind its back. Also keeps,
    per member, its parameters and moments as per-tensor views (made once per buffer).

    Both are held weakly, and the views only as long as the state lives: the step is cached per
    stack shape for the whole process, and must not keep a finished run's buffers (three copies
    of every parameter) alive after ``train`` has dropped them."""

    def __init__(self):
        self._flat = self._state = _gone
        self._views: dict[int, tuple] = {}

    def own(self, params: dict, state: AdamWState) -> tuple[torch.Tensor, AdamWState]:
        flat, owned_flat, owned_state = flatten(params), self._flat(), self._state()
        if flat is not owned_flat and next(iter(params.values()))._base is flat:
            flat = flat.clone()  # the caller's buffer (``flatten`` made no copy): copy it first
        if state is not owned_state:
            state = AdamWState(state.exp_avg.clone(), state.exp_avg_sq.clone(), state.t.clone())
        if flat is not owned_flat or state is not owned_state:
            self._views = {}
            weakref.finalize(state, self._views.clear)  # the views die with the state
        self._flat, self._state = weakref.ref(flat), weakref.ref(state)
        return flat, state

    def member_views(self, i: int, flat: torch.Tensor, state: AdamWState,
                     like: dict) -> tuple[dict, list, list, list]:
        """Member i's parameters (a dict shaped as one member of ``like``) and its parameter,
        first- and second-moment tensors as lists, all views of row i of the owned buffers."""
        if i not in self._views:
            p, m, v = (unflatten(x, like) for x in (flat, state.exp_avg, state.exp_avg_sq))
            self._views[i] = ({k: t[i] for k, t in p.items()}, *([t[i] for t in tree.values()]
                                                                 for tree in (p, m, v)))
        return self._views[i]


def _gone():
    return None


def fused_adamw(params: list, grads: list, exp_avgs: list, exp_avg_sqs: list, steps: list, *,
                lr: float, weight_decay: float, beta1: float, beta2: float, eps: float):
    """``torch.optim.AdamW(fused=True)``'s kernel on lists of tensors, in place; ``steps`` are
    the (already incremented) step counts, one 0-dim tensor per parameter tensor."""
    torch._fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=lr, beta1=beta1,
                        beta2=beta2, weight_decay=weight_decay, eps=eps, amsgrad=False,
                        maximize=False)


def clip_scale(gnorm: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """torch's ``clip_grad_norm_`` coefficient, min(1, clip / (norm + 1e-6)), 1 where clip is
    inf; in its arithmetic: its ``max_norm / tensor`` is a reciprocal times the number."""
    return torch.clamp((gnorm + 1e-6).reciprocal() * clip, max=1.0)


def make_cpu_step(member_loss: Callable, chunk: int | None, *, clips: bool, beta1: float,
                  beta2: float, eps: float, lr_multiplier: Callable[[torch.Tensor], torch.Tensor]):
    """The eager CPU step (same signature and results as ``trainer.make_step``'s):
    ``step(params, opt, step_t, lr, wd, clip, active, buffers, task_states, seed_keys)`` ->
    ``(params, opt, losses [M], bad [M])``, the parameters and state updated in place."""
    owned = InPlaceBuffers()
    one = _autograd_value_and_grad(member_loss)
    grad_fn = None if chunk == 1 else map_members(member_loss, chunk, grad=True, eager_grad=True)
    adam = {"beta1": beta1, "beta2": beta2, "eps": eps}

    def looped(flat_p, params, state, keys, lrs, wds, live, clip, buffers, task_states):
        """Each member's backward, then at once its update (its gradients still in cache),
        gradients passed per tensor as autograd made them: no copy into a flat buffer."""
        losses, ok = [], []
        for i in range(len(live)):
            p, p_list, m_list, v_list = owned.member_views(i, flat_p, state, params)
            g, loss = one(p, *_member((buffers, task_states, keys), i))
            grads = list(g.values())
            gnorm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            fine = bool(torch.isfinite(loss)) and bool(torch.isfinite(gnorm))
            losses.append(loss)
            ok.append(fine)
            if fine and live[i]:
                if clips:
                    torch._foreach_mul_(grads, clip_scale(gnorm, clip[i]).to(grads[0].dtype))
                state.t[i] += 1
                fused_adamw(p_list, grads, m_list, v_list, [state.t[i]] * len(grads), lr=lrs[i],
                            weight_decay=wds[i], **adam)
        return torch.stack(losses), ~torch.tensor(ok, device=state.t.device)

    def vmapped(flat_p, params, state, keys, lrs, wds, live, clip, buffers, task_states):
        """The chunks' gradients as one [M, P] buffer, then one kernel call per distinct (lr,
        weight decay), every row of that group in its lists."""
        grads, losses = grad_fn(params, buffers, task_states, keys)
        flat_g = flatten(grads)  # a fresh concatenation: ours to scale in place
        gnorm = torch.linalg.vector_norm(flat_g, dim=1)
        bad = ~(torch.isfinite(losses) & torch.isfinite(gnorm))
        rows = [i for i, (a, b) in enumerate(zip(live, bad.tolist())) if a and not b]
        if clips and rows:
            flat_g.mul_(clip_scale(gnorm, clip).to(flat_g.dtype).unsqueeze(1))
        groups: dict[tuple[float, float], list[int]] = {}
        for i in rows:
            groups.setdefault((lrs[i], wds[i]), []).append(i)
        for (lr, wd), idx in groups.items():
            state.t[idx] += 1
            fused_adamw([flat_p[i] for i in idx], [flat_g[i] for i in idx],
                        [state.exp_avg[i] for i in idx], [state.exp_avg_sq[i] for i in idx],
                        [state.t[i] for i in idx], lr=lr, weight_decay=wd, **adam)
        return losses, bad

    def step(params, opt_state, step_t, lr, wd, clip, active, buffers, task_states, seed_keys):
        flat_p, state = owned.own(params, opt_state)
        params = unflatten(flat_p, params)
        mult = float(lr_multiplier(step_t))
        lrs = [x * mult for x in lr.tolist()]
        run = looped if chunk == 1 else vmapped
        losses, bad = run(flat_p, params, state, rng.derive(seed_keys, step_t), lrs, wd.tolist(),
                          active.tolist(), clip, buffers, task_states)
        return params, state, losses, bad
    return step
