"""A stack: M members of one architecture, their parameters stacked along a leading dim.

Each member is built exactly as it would be alone (same seed -> same weights), then
``torch.func.stack_module_state`` stacks them; a meta-device copy of the module runs through
``functional_call`` under ``vmap``. Members may differ in seed, gamma, learning rate, weight
decay, clip norm and task state (random tables, training subsets), never in shapes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch.func import functional_call, stack_module_state
from torch.utils._pytree import tree_flatten, tree_map

from ..errors import InputError
from ..models import ParamRoles, build_model, parameter_roles
from .members import AUTO, map_members, peak_buffer_bytes, resolve_chunk


@dataclass(frozen=True)
class Member:
    """One member's identity and hyperparameters."""

    seed: int
    lr: float = 3e-4
    weight_decay: float = 0.0
    gamma: Optional[float] = None
    clip_norm: Optional[float] = None
    task_seed: Optional[int] = None  # seed of the task state; defaults to ``seed``
    tag: dict = field(default_factory=dict, compare=False)


def stack_states(states: list[dict], device) -> dict[str, torch.Tensor]:
    keys = set(states[0])
    for s in states[1:]:
        if set(s) != keys:
            raise ValueError("task states of one stack must have the same keys")
    return {k: torch.stack([s[k] for s in states]).to(device) for k in sorted(keys)}


class Stack:
    def __init__(self, model_name: str, model_values: dict, tasks, members: list[Member],
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        if not members:
            raise InputError("members", "a stack needs at least one member")
        if not isinstance(tasks, (list, tuple)):
            tasks = [tasks] * len(members)
        if len({t.shape_key() for t in tasks}) != 1:
            raise ValueError("all members of a stack need tasks of one shape")
        self.device = torch.device(device)
        self.dtype = dtype
        self.model_name = model_name
        self.model_values = dict(model_values)
        self.task = tasks[0]
        self.tasks = list(tasks)
        self.members = list(members)
        modules = [
            build_model(model_name, model_values, t, seed=m.seed, gamma=m.gamma)
            for t, m in zip(tasks, members)
        ]
        if dtype != torch.float32:  # float64 for exactness tests and curvature oracles
            modules = [m.to(dtype) for m in modules]
        params, buffers = stack_module_state(modules)
        self.params = {k: v.detach().to(self.device) for k, v in params.items()}
        self.buffers = {k: v.detach().to(self.device) for k, v in buffers.items()}
        self._template = modules[0]
        self._roles = None
        self._forward_peaks: dict = {}  # (input shape, dtype) -> bytes, see forward_peak
        self.base = copy.deepcopy(modules[0]).to("meta")
        # Untying shared weights walks every module on every call (a fifth of a small model's
        # forward overhead); only a model that registers one tensor under two names needs it.
        self._tied = len(list(modules[0].named_parameters(remove_duplicate=False))) != \
            len(list(modules[0].named_parameters()))
        # Where each parameter and buffer lives in ``base`` (see ``apply``): (the submodule's
        # dict, the attribute, the index of the tensor among params then buffers). A tied
        # tensor has one key in ``params`` and a slot under each of its names.
        self._param_keys, self._buffer_keys = list(self.params), list(self.buffers)
        index = {k: i for i, k in enumerate(self._param_keys + self._buffer_keys)}
        self._slots = []
        for kind, named in (("_parameters", modules[0].named_parameters),
                            ("_buffers", modules[0].named_buffers)):
            first_name = {id(t): k for k, t in named()}
            self._slots += [(getattr(self.base.get_submodule(k.rpartition(".")[0]), kind),
                             k.rpartition(".")[2], index[first_name[id(t)]])
                            for k, t in named(remove_duplicate=False)]
        self.task_states = stack_states(
            [t.make_state(m.task_seed if m.task_seed is not None else m.seed) for t, m in
             zip(tasks, members)],
            self.device,
        )
        self.seed_keys = torch.tensor([m.seed & 0xFFFFFFFF for m in members], dtype=torch.int64,
                                      device=self.device)

    @property
    def roles(self) -> ParamRoles:
        """Which parameter keys play which part (``models/roles.py``); keys of ``params``."""
        if self._roles is None:
            self._roles = parameter_roles(self._template)
        return self._roles

    @property
    def M(self) -> int:
        return len(self.members)

    @property
    def metric_dtype(self) -> torch.dtype:
        """Precision of hyperparameters, optimizer arithmetic and recorded losses: the
        parameters' dtype, at least fp32 (a float64 stack keeps float64 throughout)."""
        return torch.promote_types(self.dtype, torch.float32)

    def hyper(self, name: str, default: float = float("inf")) -> torch.Tensor:
        """An [M] tensor of a member hyperparameter (None -> ``default``)."""
        vals = [getattr(m, name) for m in self.members]
        return torch.tensor([default if v is None else float(v) for v in vals],
                            dtype=self.metric_dtype, device=self.device)

    # -- functional forward -----------------------------------------------------------------
    def apply(self, params: dict, buffers: dict, x: torch.Tensor, acts: bool = False, **kwargs):
        """Forward of ONE member (call under vmap, or in ``map``'s loop, for the stack);
        ``kwargs`` go to the model's forward (e.g. the parts of a seq2seq model's decoding)."""
        if self._plain_call_ok(params, buffers):
            # Outside vmap (the looped training step, measures, evaluation, decoding): place the
            # tensors into the private meta module's slots and call it, instead of
            # functional_call's swap and restore of every tensor (8% of a small model's forward);
            # the same module code runs on the same tensors, so autograd sees the same graph.
            tensors = (*params.values(), *buffers.values())
            for slots, name, i in self._slots:
                slots[name] = tensors[i]
            return self.base(x, acts=acts, **kwargs)
        return functional_call(self.base, (params, buffers), (x,), {"acts": acts, **kwargs},
                               tie_weights=self._tied)

    def _plain_call_ok(self, params: dict, buffers: dict) -> bool:
        if torch.compiler.is_compiling():
            return False
        if list(params) != self._param_keys or list(buffers) != self._buffer_keys:
            return False
        first = next(iter(params.values()), None)
        return first is not None and not torch._C._functorch.is_functorch_wrapped_tensor(first)

    def forward(self, x: torch.Tensor, acts: bool = False, shared_input: bool = True,
                params: dict | None = None, chunk=AUTO):
        """Forward of every member: x [B, L] shared, or [M, B, L] per member (``map``)."""
        p = self.params if params is None else params
        shape = tuple(x.shape) if shared_input else tuple(x.shape[1:])
        return self.map(lambda pp, bb, xx: self.apply(pp, bb, xx, acts), p, self.buffers, x,
                        in_dims=(0, 0, None if shared_input else 0), chunk=chunk,
                        peak_bytes=lambda: self.forward_peak(shape, x.dtype))

    def forward_peak(self, x_shape: tuple, x_dtype: torch.dtype = torch.int64) -> int:
        """Largest buffer one member's forward makes on an input of ``x_shape`` (bytes),
        probed once per shape (one forward on zeros): what a measure that runs forwards tells
        ``map``'s chunking rule (times the forwards it batches in one call)."""
        key = (tuple(x_shape), x_dtype)
        if key not in self._forward_peaks:
            first = {k: v[0] for k, v in self.params.items()}
            buffers = {k: v[0] for k, v in self.buffers.items()}
            x = torch.zeros(x_shape, dtype=x_dtype, device=self.device)
            self._forward_peaks[key] = peak_buffer_bytes(
                lambda p, b, xx: self.apply(p, b, xx), (first, buffers, x), grad=False,
                shapes_only=True)
        return self._forward_peaks[key]

    def map(self, fn, *args, in_dims=0, chunk=AUTO, peak_bytes=None):
        """``fn(*member_args)`` for every member, results stacked along a new dim 0.

        The one way to run a per-member function over a stack (the trainer's step and
        evaluation, and every measure lifted over a stack by ``measure/lift.py``): ``args`` are
        trees of tensors with the member dim first (``in_dims`` 0) or shared by all members
        (None), e.g.
        ``stack.map(f, stack.params, stack.buffers, x, in_dims=(0, 0, None))``. ``chunk`` picks
        how (``train/members.py``): ``"auto"`` (default: one vmap on an accelerator; on a CPU
        cache-sized vmapped chunks, or a plain loop for members with large buffers), None (one
        vmap), or k (vmapped chunks of at most k members; 1 = a loop). ``peak_bytes`` (bytes,
        or a function returning them, e.g. from ``forward_peak``), when known, is the largest
        buffer of ``fn`` on one member; otherwise the rule probes ``fn`` once on member 0.
        ``fn`` is forward-only work (the trainer maps its
        gradient step with ``map_members`` itself).
        """
        dims = tuple(in_dims) if isinstance(in_dims, (tuple, list)) else (in_dims,) * len(args)
        n = self.M if not any(d == 0 for d in dims) else \
            tree_flatten([a for a, d in zip(args, dims) if d == 0])[0][0].shape[0]

        def probe() -> int:
            if peak_bytes is not None:
                return int(peak_bytes() if callable(peak_bytes) else peak_bytes)
            first = tuple(a if d is None else tree_map(lambda t: t[0], a) for a, d in zip(args, dims))
            return peak_buffer_bytes(fn, first, grad=False)

        c = resolve_chunk(self.device, n, chunk, probe, backward=False)
        return map_members(fn, c, in_dims=dims)(*args)

    # -- members as plain modules -------------------------------------------------------------
    def member(self, i: int) -> torch.nn.Module:
        """Member i as an ordinary ``nn.Module`` (a copy, on the stack's device)."""
        module = copy.deepcopy(self._template).to(self.device)
        state = {k: v[i].detach().clone() for k, v in self.params.items()}
        state.update({k: v[i].detach().clone() for k, v in self.buffers.items()})
        module.load_state_dict(state)
        return module

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i].detach().contiguous().cpu() for k, v in self.params.items()}

    def select(self, idx: list[int]) -> "Stack":
        """A new stack holding members ``idx`` (parameters copied, task states sliced)."""
        new = copy.copy(self)
        ix = torch.tensor(idx, device=self.device)
        new.members = [self.members[i] for i in idx]
        new.tasks = [self.tasks[i] for i in idx]
        new.params = {k: v[ix].clone() for k, v in self.params.items()}
        new.buffers = {k: v[ix].clone() for k, v in self.buffers.items()}
        new.task_states = {k: v[ix] for k, v in self.task_states.items()}
        new.seed_keys = self.seed_keys[ix]
        return new
