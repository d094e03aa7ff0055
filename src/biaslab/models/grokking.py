"""The grokking model of Vasudeva et al.'s modular-addition study (sheet §3 "Grokking model").

token embedding + learned position embedding (zero-initialised)
  -> one multi-head self-attention (d 128, 4 heads)
  -> MLP d -> 4d -> d with ReLU
  -> linear read-out at the last position ("=")
with **no residual connections and no LayerNorm**, dropout 0. The attention is the lab's
plain-matmul ``SelfAttention`` (vmappable) with the initialisation of ``nn.MultiheadAttention``
(the reference's module): query/key/value weights Xavier-uniform over the fused [3d, d] in-projection,
zero in-projection and out-projection biases, the out-projection weight PyTorch's Linear default.
The token embedding is N(0, 1) (nn.Embedding's default), which is why the reference's weight norm
starts near sqrt(114 * 128) = 121.

One deviation, on purpose: the read-out has one output per residue (p), not p + 1 as in the
reference, whose extra "=" logit is never a target.

Without residuals only the "=" position's attention output reaches the read-out, so the MLP runs
on that position alone: the same function as the reference's MLP over every position followed by
taking the last one, at a third of the MLP's cost.

Embedding protocol (``measure/tokenwise.py``): ``embed(x)`` is token + position embedding
[B, 3, d], ``forward_embedded(e)`` the rest, so the reference's sensitivity (noise on the
embeddings of a and b) is measured where the reference adds it.

Activations returned with ``acts=True``: ``embed`` [B, L, d], ``attn`` [B, H, L, L] (pattern),
``attn_out`` [B, L, d], ``hidden`` [B, d_ff] (post-ReLU at "="), ``readout`` [B, d].
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator
from torch import nn

from .attention import SelfAttention
from .base import ModelConfig, OutputHead, register_model


class GrokkingConfig(ModelConfig):
    d_model: int = Field(default=128, gt=0, description="embedding and attention width")
    n_heads: int = Field(default=4, gt=0, description="attention heads")
    d_ff: int = Field(default=512, gt=0, description="MLP hidden width")

    @model_validator(mode="after")
    def _shapes(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        return self


class GrokkingTransformer(nn.Module):
    def __init__(self, cfg: GrokkingConfig, vocab_size: int, seq_len: int, n_outputs: int):
        super().__init__()
        d = cfg.d_model
        self.token_embed = nn.Embedding(vocab_size, d)
        self.pos_embed = nn.Parameter(torch.zeros(seq_len, d))
        self.attn = SelfAttention(d, cfg.n_heads)
        self.fc1 = nn.Linear(d, cfg.d_ff)
        self.fc2 = nn.Linear(cfg.d_ff, d)
        self.head = OutputHead(d, n_outputs)
        self._multihead_init(d)

    @torch.no_grad()
    def _multihead_init(self, d: int) -> None:
        # nn.MultiheadAttention: xavier_uniform_ on the fused [3d, d] in-projection, whose bound
        # sqrt(6 / (fan_in + fan_out)) = sqrt(6 / 4d) applies to each of q, k, v; zero biases.
        bound = math.sqrt(6.0 / (d + 3 * d))
        for lin in (self.attn.q, self.attn.k, self.attn.v):
            lin.weight.uniform_(-bound, bound)
            lin.bias.zero_()
        self.attn.out.bias.zero_()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Token + position embedding of x [B, L]: [B, L, d] (where the reference adds noise)."""
        return self.token_embed(x) + self.pos_embed[: x.shape[-1]]

    def forward_embedded(self, e: torch.Tensor, acts: bool = False):
        """Everything after the embedding: e [B, L, d] -> logits [B, n_outputs]."""
        a, pattern = self.attn(e)
        hidden = torch.relu(self.fc1(a[:, -1]))
        r = self.fc2(hidden)
        out = self.head(r)
        if acts:
            return out, {"embed": e, "attn": pattern, "attn_out": a, "hidden": hidden,
                         "readout": r}
        return out

    def forward(self, x: torch.Tensor, acts: bool = False):
        return self.forward_embedded(self.embed(x), acts)


@register_model("grokking", GrokkingConfig,
                "Vasudeva et al.'s grokking model: embeddings, one attention, MLP; no residuals, no LN")
def build_grokking(cfg: GrokkingConfig, task) -> nn.Module:
    return GrokkingTransformer(cfg, task.vocab_size, task.seq_len, task.n_outputs)
