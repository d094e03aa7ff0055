"""Parameter roles: which parameter keys of a model play which part.

Measures and experiments ask for a role (the token embedding, the positional embeddings, the
query weight of layer i, every LayerNorm parameter, the read-out) and never spell a parameter
key such as ``"layers.0.attn.q.weight"``: a model may rename or restructure its modules without
breaking them. The roles of a model are read from its module structure, by type:

* token embedding: the ``nn.Embedding`` at the attribute ``token_embed``;
* position embeddings: every ``nn.Embedding`` whose attribute name starts with ``pos_embed``
  (``POSITION_PREFIX``; the seq2seq model has two);
* query / key / value of layer i: the ``q`` / ``k`` / ``v`` projections of the i-th attention
  module (``SelfAttention``, or any module with ``q``, ``k``, ``v`` Linears) in forward order;
* LayerNorms: the gain and bias of every ``nn.LayerNorm``;
* read-out: the weight and bias of the ``head`` (an ``OutputHead`` or a plain ``nn.Linear``).

A model whose structure does not follow these conventions declares its roles itself with a
method ``parameter_roles(self) -> ParamRoles``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from torch import nn

#: Attribute-name prefix of positional embedding modules (see the module docstring).
POSITION_PREFIX = "pos_embed"


@dataclass(frozen=True)
class ParamRoles:
    """Parameter keys by role (keys as in ``named_parameters`` and ``Stack.params``)."""

    token_embedding: Optional[str] = None
    position_embeddings: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()  # query weight of attention layer i, in forward order
    keys: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    layer_norms: tuple[str, ...] = ()  # gains and biases of every LayerNorm
    readout_weight: Optional[str] = None
    readout_bias: Optional[str] = None

    def query(self, layer: int = 0) -> str:
        return _at(self.queries, layer, "query")

    def key(self, layer: int = 0) -> str:
        return _at(self.keys, layer, "key")

    def value(self, layer: int = 0) -> str:
        return _at(self.values, layer, "value")

    @property
    def readout(self) -> tuple[str, ...]:
        return tuple(k for k in (self.readout_weight, self.readout_bias) if k is not None)


def _at(keys: tuple[str, ...], layer: int, role: str) -> str:
    if not -len(keys) <= layer < len(keys):
        raise KeyError(f"the model has no {role} weight of attention layer {layer} "
                       f"({len(keys)} attention layers)")
    return keys[layer]


def parameter_roles(model: nn.Module) -> ParamRoles:
    """The roles of ``model``'s parameters: its own ``parameter_roles()`` if it declares them,
    else read from its module structure (see the module docstring)."""
    own = getattr(model, "parameter_roles", None)
    if callable(own):
        return own()
    params = {n for n, _ in model.named_parameters()}

    def keys_of(prefix: str, *names: str) -> list[str]:
        full = [f"{prefix}.{n}" if prefix else n for n in names]
        return [k for k in full if k in params]

    token, positions, q, k, v, norms = None, [], [], [], [], []
    readout_w = readout_b = None
    for name, module in model.named_modules():
        attr = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.Embedding):
            if attr == "token_embed" and token is None:
                token = next(iter(keys_of(name, "weight")), None)
            elif attr.startswith(POSITION_PREFIX):
                positions += keys_of(name, "weight")
        elif isinstance(module, nn.LayerNorm):
            norms += keys_of(name, "weight", "bias")
        elif all(isinstance(getattr(module, p, None), nn.Linear) for p in ("q", "k", "v")):
            q += keys_of(name, "q.weight")
            k += keys_of(name, "k.weight")
            v += keys_of(name, "v.weight")
        if name == "head":
            linear = module if isinstance(module, nn.Linear) else getattr(module, "linear", None)
            if isinstance(linear, nn.Linear):
                prefix = "head" if linear is module else "head.linear"
                readout_w = next(iter(keys_of(prefix, "weight")), None)
                readout_b = next(iter(keys_of(prefix, "bias")), None)
    return ParamRoles(token, tuple(positions), tuple(q), tuple(k), tuple(v), tuple(norms),
                      readout_w, readout_b)


def position_keys(names: Iterable[str]) -> list[str]:
    """The positional-embedding keys among bare parameter names (a state dict without its
    module), by the models' naming convention."""
    return [n for n in names if any(part.startswith(POSITION_PREFIX) for part in n.split(".")[:-1])]


def query_keys(names: Iterable[str]) -> list[str]:
    """The query weights among bare parameter names, in order, by the naming convention."""
    return [n for n in names if n.endswith(".q.weight")]
