"""The initializations of torch's own transformer modules, for models built as Hahn & Rofin's
reference builds them (lacoco-lab/sensitivity-hardness ``src/model.py``) with our plain-matmul
attention (``attention.py``, which vmaps; ``nn.MultiheadAttention`` is not used).

The reference's encoder is ``torch.nn.TransformerEncoder`` and its scratchpad model
``torch.nn.Transformer``. Their attention, ``torch.nn.MultiheadAttention``, initializes itself
(``MultiheadAttention._reset_parameters``, torch 1.12.1 as in the reference and 2.x alike):

* q, k and v are ONE packed matrix ``in_proj_weight`` [3d, d], Xavier-uniform, so each entry is
  U(-b, b) with b = sqrt(6 / (fan_in + fan_out)) = sqrt(6 / (d + 3d)) -- the bound of the packed
  matrix, not the larger sqrt(6 / 2d) of one d x d block;
* the q/k/v biases and the output projection's bias are 0;
* the output projection's weight keeps ``nn.Linear``'s default.

``torch.nn.Transformer`` then re-draws every parameter with more than one dimension
Xavier-uniform (``Transformer._reset_parameters``): the packed q/k/v again (same bound), the
output projections and both feed-forward matrices, with their own fan-in and fan-out; 1-D
parameters keep their values (attention biases 0, feed-forward biases nn.Linear's default,
LayerNorm 1 and 0). The embeddings and the head are outside the torch module in the reference
and keep their defaults.

Not copied: ``nn.TransformerEncoder`` deep-copies one layer, so the reference's two encoder
layers start from identical weights (and ``nn.Transformer``'s layers share their 1-D biases);
every layer here draws its own.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def is_attention(module: nn.Module) -> bool:
    return all(isinstance(getattr(module, a, None), nn.Linear) for a in ("q", "k", "v", "out"))


def packed_qkv_bound(attn: nn.Module) -> float:
    """Xavier-uniform bound of the packed [q; k; v] matrix: sqrt(6 / (d_in + total q/k/v width))."""
    fan_out = attn.q.out_features + attn.k.out_features + attn.v.out_features
    return math.sqrt(6.0 / (attn.q.in_features + fan_out))


@torch.no_grad()
def xavier_attention_(attn: nn.Module) -> None:
    """As ``nn.MultiheadAttention._reset_parameters``: q/k/v weights U(-b, b) with the packed
    bound, q/k/v and output biases 0; the output weight is left as it is. Draws from torch's
    global generator (seeded by ``build_model``)."""
    b = packed_qkv_bound(attn)
    for lin in (attn.q, attn.k, attn.v):
        lin.weight.uniform_(-b, b)
    for lin in (attn.q, attn.k, attn.v, attn.out):
        if lin.bias is not None:
            lin.bias.zero_()


@torch.no_grad()
def torch_transformer_init_(layers: nn.Module, qkv: bool = True, matrices: bool = True) -> None:
    """As ``nn.Transformer._reset_parameters`` over ``layers`` (its encoder and decoder layers):
    with ``qkv`` every attention as ``xavier_attention_``; with ``matrices`` every other matrix
    (output projections, feed-forward) Xavier-uniform. Both: the reference's scratchpad model."""
    attns = [m for m in layers.modules() if is_attention(m)]
    packed = {id(lin.weight) for a in attns for lin in (a.q, a.k, a.v)}
    if qkv:
        for a in attns:
            xavier_attention_(a)
    if matrices:
        for p in layers.parameters():
            if p.dim() > 1 and id(p) not in packed:
                nn.init.xavier_uniform_(p)
