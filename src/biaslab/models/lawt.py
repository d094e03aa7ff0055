"""The LAWT encoder-decoder (Lample & Charton's transformer, as used in Charton's linear algebra papers).

Sheet ``math-transformer.md`` section 3 and facebookresearch/LAWT ``src/model/transformer.py``:
separate encoder and decoder token embeddings (normal, std dim^-1/2, the ``<pad>`` row zero),
learned positions, a LayerNorm (eps 1e-12) on the embeddings, Post-LN blocks (eps 1e-12), ReLU
feed-forward of width 4 dim, dropout 0, and the output projection tied to the decoder's input
embedding (with its own bias, ``out_bias``). The encoder ignores ``<pad>`` keys; the decoder is causal and
attends to the encoder's non-pad positions.

Decoder block (standard, sequential):
    g = LN1(g + SelfAttn(g));  g = LN15(g + CrossAttn(g, memory));  g = LN2(g + FF(g))
With ``parallel_cross`` (the reference's quirk, sheet section 6.2) the cross-attention queries
with the block's *input* instead of LN1's output; both results still go through LN1 / LN15.

Input layout (the repo's seq2seq convention, ``tasks/prefix_parity.py``): one token row of
``encoder_len + decoder_len`` tokens, the encoder input padded with ``<pad>``, then the decoder
input (``<eos>`` as BOS, the target shifted right). The output is [B, decoder_len, vocab]
logits. ``forward(x, part="encode")`` returns the encoder memory, ``part="decode"`` the logits of
decoder tokens ``x`` given ``memory`` and its key mask ``src_keep`` (``"decode_last"``: only the
last position's); ``"cross_kv"`` and ``"decode_step"`` decode one position at a time with a
key/value cache, as the reference's ``generate`` does: ``models/decoding.py``
builds greedy and beam search from these two parts, for a module or a stack member alike.
Attention is plain matmul (``models/attention.py``'s reason), so the model vmaps in a Stack.

Activations with ``acts=True``: ``memory`` [B, Le, d_enc], ``readout`` [B, Ld, d_dec].
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, model_validator
from torch import nn

from ..errors import InputError
from .base import ModelConfig, register_model


class LAWTConfig(ModelConfig):
    d_model: int = Field(default=256, gt=0, description="encoder width (the reference's enc_emb_dim)")
    d_dec: int = Field(default=0, ge=0, description="decoder width; 0 = d_model")
    n_heads: int = Field(default=8, gt=0, description="encoder attention heads")
    n_dec_heads: int = Field(default=0, ge=0, description="decoder attention heads; 0 = n_heads")
    n_enc_layers: int = Field(default=4, ge=1, description="encoder layers")
    n_dec_layers: int = Field(default=4, ge=1, description="decoder layers")
    ff_mult: int = Field(default=4, gt=0, description="feed-forward width / model width")
    max_len: int = Field(default=0, ge=0, description="position tables' size; 0 = task lengths")
    ln_eps: float = Field(default=1e-12, gt=0)
    parallel_cross: bool = Field(default=False, description="the reference's decoder quirk: "
                                 "cross-attention queries with the block input")
    tie_output: bool = Field(default=True, description="output projection = decoder embedding")

    @model_validator(mode="after")
    def _heads_divide(self):
        for dim, heads, name in ((self.d_model, self.n_heads, "n_heads"),
                                 (self.d_dec or self.d_model, self.n_dec_heads or self.n_heads,
                                  "n_dec_heads")):
            if dim % heads:
                raise ValueError(f"{name}={heads} does not divide the width {dim}")
        return self


class Attention(nn.Module):
    """Multi-head attention of queries [B, Lq, d] over keys/values [B, Lk, d_src], plain matmul,
    with an optional key mask ``keep`` [B, Lk] (False = ignored) and an optional causal mask."""

    def __init__(self, d: int, d_src: int, n_heads: int):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d // n_heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d_src, d)
        self.v = nn.Linear(d_src, d)
        self.out = nn.Linear(d, d)

    def keys_values(self, kv, kept: bool = False):
        """Keys and values [B, heads, Lk, d_head] of sources ``kv`` [B, Lk, d_src] (what a decoding
        cache keeps: the memory's once per sequence, a new position's once per step).

        ``kept``: values to be reused at every step (the memory's): laid out once the way each
        step's matmuls copy them (keys as contiguous [B, heads, d_head, Lk] seen transposed,
        values contiguous), so no step copies them again; the matmuls then read the very
        layout they would have made, and give the same numbers."""
        B, Lk, _ = kv.shape
        k = self.k(kv).view(B, Lk, self.n_heads, self.d_head).transpose(1, 2)
        v = self.v(kv).view(B, Lk, self.n_heads, self.d_head).transpose(1, 2)
        if kept:
            return k.transpose(-1, -2).contiguous().transpose(-1, -2), v.contiguous()
        return k, v

    def attend(self, g, k, v, keep=None, causal: bool = False):
        """Queries from ``g`` [B, Lq, d] over given keys/values [B, heads, Lk, d_head]."""
        B, Lq, _ = g.shape
        q = self.q(g).view(B, Lq, self.n_heads, self.d_head).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        if keep is not None:
            scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        if causal:
            future = torch.ones(Lq, k.shape[2], dtype=torch.bool, device=g.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        # softmax in fp32 as the reference does (its fp16 AMP would overflow otherwise)
        pattern = scores.float().softmax(-1).to(v.dtype)
        return self.out((pattern @ v).transpose(1, 2).reshape(B, Lq, -1))

    def forward(self, g, kv, keep=None, causal: bool = False):
        return self.attend(g, *self.keys_values(kv), keep, causal)


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int):
        super().__init__()
        self.ff1, self.ff2 = nn.Linear(d, mult * d), nn.Linear(mult * d, d)

    def forward(self, h):
        return self.ff2(torch.relu(self.ff1(h)))


class EncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, cfg: LAWTConfig):
        super().__init__()
        self.attn = Attention(d, d, heads)
        self.ln1 = nn.LayerNorm(d, eps=cfg.ln_eps)
        self.ff = FeedForward(d, cfg.ff_mult)
        self.ln2 = nn.LayerNorm(d, eps=cfg.ln_eps)

    def forward(self, h, keep):
        h = self.ln1(h + self.attn(h, h, keep))
        return self.ln2(h + self.ff(h))


class DecoderLayer(nn.Module):
    def __init__(self, d: int, d_src: int, heads: int, cfg: LAWTConfig):
        super().__init__()
        self.parallel_cross = cfg.parallel_cross
        self.self_attn = Attention(d, d, heads)
        self.ln1 = nn.LayerNorm(d, eps=cfg.ln_eps)
        self.cross = Attention(d, d_src, heads)
        self.ln15 = nn.LayerNorm(d, eps=cfg.ln_eps)
        self.ff = FeedForward(d, cfg.ff_mult)
        self.ln2 = nn.LayerNorm(d, eps=cfg.ln_eps)

    def forward(self, g, memory, src_keep):
        out = self.ln1(g + self.self_attn(g, g, causal=True))
        query = g if self.parallel_cross else out
        out = self.ln15(out + self.cross(query, memory, src_keep))
        return self.ln2(out + self.ff(out))

    def step(self, g, cache, cross_kv, src_keep):
        """One decoding position ``g`` [B, 1, d] given the self-attention keys/values of the
        earlier positions (``cache``, None at the first) and the memory's (``cross_kv``): its
        output and the cache extended by this position. Same result as ``forward`` on the whole
        prefix (its last row): the causal mask only ever hid the positions not yet decoded."""
        k, v = self.self_attn.keys_values(g)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        out = self.ln1(g + self.self_attn.attend(g, k, v))
        query = g if self.parallel_cross else out
        out = self.ln15(out + self.cross.attend(query, *cross_kv, src_keep))
        return self.ln2(out + self.ff(out)), (k, v)


def _embedding(n: int, d: int, pad_id: int | None) -> nn.Embedding:
    emb = nn.Embedding(n, d)
    nn.init.normal_(emb.weight, mean=0.0, std=d ** -0.5)
    if pad_id is not None:
        with torch.no_grad():
            emb.weight[pad_id].zero_()
    return emb


class LAWTModel(nn.Module):
    def __init__(self, cfg: LAWTConfig, vocab_size: int, enc_len: int, dec_len: int,
                 pad_id: int = 1):
        super().__init__()
        self.cfg, self.enc_len, self.dec_len, self.pad_id = cfg, enc_len, dec_len, pad_id
        d_enc, d_dec = cfg.d_model, cfg.d_dec or cfg.d_model
        h_enc, h_dec = cfg.n_heads, cfg.n_dec_heads or cfg.n_heads
        self.enc_embed = _embedding(vocab_size, d_enc, pad_id)
        self.dec_embed = _embedding(vocab_size, d_dec, pad_id)
        self.pos_embed_enc = _embedding(cfg.max_len or enc_len, d_enc, None)
        self.pos_embed_dec = _embedding(cfg.max_len or dec_len, d_dec, None)
        self.ln_emb_enc = nn.LayerNorm(d_enc, eps=cfg.ln_eps)
        self.ln_emb_dec = nn.LayerNorm(d_dec, eps=cfg.ln_eps)
        self.encoder = nn.ModuleList(EncoderLayer(d_enc, h_enc, cfg) for _ in range(cfg.n_enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_dec, d_enc, h_dec, cfg)
                                     for _ in range(cfg.n_dec_layers))
        # The tied projection reads the decoder embedding's weight directly (no second Parameter
        # object sharing it): stacking, functional_call and state dicts then need no tie logic.
        proj = nn.Linear(d_dec, vocab_size)  # drawn in both cases: the same init either way
        if cfg.tie_output:
            self.out_bias = nn.Parameter(proj.bias.detach().clone())
        else:
            self.proj = proj

    def encode(self, xe: torch.Tensor) -> torch.Tensor:
        """Encoder tokens [B, Le] -> memory [B, Le, d_enc] (pad positions zeroed)."""
        keep = xe != self.pad_id
        pos = self.pos_embed_enc(torch.arange(xe.shape[1], device=xe.device))
        h = self.ln_emb_enc(self.enc_embed(xe) + pos) * keep[..., None]
        for layer in self.encoder:
            h = layer(h, keep) * keep[..., None]
        return h

    def decode(self, xd: torch.Tensor, memory: torch.Tensor, src_keep: torch.Tensor,
               record: dict | None = None, last: bool = False) -> torch.Tensor:
        """Decoder tokens [B, Ld'] (any prefix length) -> logits [B, Ld', vocab] (``last``: only
        the last position's, [B, 1, vocab]: a decoding step needs no more)."""
        pos = self.pos_embed_dec(torch.arange(xd.shape[1], device=xd.device))
        g = self.ln_emb_dec(self.dec_embed(xd) + pos)
        for layer in self.decoder:
            g = layer(g, memory, src_keep)
        if record is not None:
            record["readout"] = g
        if last:
            g = g[:, -1:]
        return self.project(g)

    def project(self, g):
        if self.cfg.tie_output:
            return nn.functional.linear(g, self.dec_embed.weight, self.out_bias)
        return self.proj(g)

    def decode_step(self, tok, t: int, cross_kv: list, src_keep, cache: list):
        """Incremental decoding (the reference's key/value cache): the token ``tok`` [B, 1] at
        decoder position ``t`` -> (its logits [B, 1, vocab], the cache with this position).
        ``cross_kv`` is ``part="cross_kv"`` of the memory; ``cache`` one entry per decoder layer
        (None before the first step)."""
        g = self.ln_emb_dec(self.dec_embed(tok) + self.pos_embed_dec.weight[t])
        new_cache = []
        for layer, kv, c in zip(self.decoder, cross_kv, cache):
            g, c = layer.step(g, c, kv, src_keep)
            new_cache.append(c)
        return self.project(g), new_cache

    def forward(self, x, acts: bool = False, part: str = "full", memory=None, src_keep=None,
                t: int = 0, cross_kv=None, cache=None):
        if part == "encode":
            return self.encode(x)
        if part in ("decode", "decode_last"):
            return self.decode(x, memory, src_keep, last=part == "decode_last")
        if part == "cross_kv":  # x = memory
            return [layer.cross.keys_values(x, kept=True) for layer in self.decoder]
        if part == "decode_step":
            return self.decode_step(x, t, cross_kv, src_keep, cache)
        xe, xd = x[:, :self.enc_len], x[:, self.enc_len:]
        record: dict = {}
        memory = self.encode(xe)
        record["memory"] = memory
        logits = self.decode(xd, memory, xe != self.pad_id, record)
        return (logits, record) if acts else logits


def task_lengths(task) -> tuple[int, int]:
    """(encoder_len, decoder_len) of a seq2seq task, checked."""
    enc_len = int(getattr(task, "encoder_len", task.seq_len // 2))
    dec_len = int(getattr(task, "decoder_len", task.seq_len - enc_len))
    if enc_len < 1 or dec_len < 1 or enc_len + dec_len != task.seq_len:
        raise InputError("model.lawt", f"task {type(task).__name__} has no encoder/decoder split "
                         f"(encoder_len {enc_len}, decoder_len {dec_len}, seq_len {task.seq_len})",
                         "a seq2seq task with encoder_len + decoder_len = seq_len")
    return enc_len, dec_len


@register_model("lawt", LAWTConfig,
                "LAWT encoder-decoder (Charton): post-LN eps 1e-12, embedding LayerNorm, learned "
                "positions, tied output projection; logits at every decoder position")
def build_lawt(cfg: LAWTConfig, task) -> nn.Module:
    enc_len, dec_len = task_lengths(task)
    if cfg.max_len and cfg.max_len < max(enc_len, dec_len):
        raise InputError("model.lawt.max_len", f"{cfg.max_len} is shorter than the task's "
                         f"sequences ({max(enc_len, dec_len)})", f">= {max(enc_len, dec_len)}")
    return LAWTModel(cfg, task.vocab_size, enc_len, dec_len, int(getattr(task, "pad_id", 1)))
