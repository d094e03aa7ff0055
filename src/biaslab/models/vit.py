"""Vision transformers on images x [B, C, H, W]: "ViT for small datasets" and SimpleViT.

``vit`` (Lee, Lee & Song 2021, the model of Vasudeva et al.'s vision runs):
  * Shifted Patch Tokenization: the image and its four copies shifted by half a patch
    diagonally (zero fill) are stacked on channels, cut into patches, LayerNorm, Linear;
  * Locality Self-Attention: a learnable temperature (initialised at 1/sqrt(d_head)) and the
    diagonal masked, so no token attends to itself;
  * a class token, learned positions, pre-LN blocks, class-token read-out.
``simple_vit`` (Beyer et al. 2022): plain patches (LayerNorm, Linear, LayerNorm), fixed 2-D
sin-cos positions, pre-LN blocks, mean pooling.

Attention is plain matmuls (vmaps and compiles). There is no dropout: the stack trainer's vmap
draws no per-member randomness inside the model (the reference used 0.1).
Both follow the embedding protocol of ``measure/tokenwise.py``: ``embed(x)`` gives the tokens
[B, T, D] (class token first for ``vit``), ``forward_embedded(e)`` the rest.

Activations (``acts=True``): ``embed`` [B, T, D], ``layers.{i}.attn`` [B, H, T, T],
``layers.{i}.out`` [B, T, D], ``readout`` [B, D].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from .base import ModelConfig, OutputHead, register_model


class ViTConfig(ModelConfig):
    patch: int = Field(default=4, gt=0, description="patch side (divides the image size)")
    dim: int = Field(default=64, gt=0, description="token width")
    depth: int = Field(default=2, ge=1, description="transformer blocks (reference: 8)")
    heads: int = Field(default=4, gt=0, description="attention heads (reference: 32)")
    dim_head: int = Field(default=16, gt=0, description="width of one head (reference: 64)")
    mlp_dim: int = Field(default=128, gt=0, description="feed-forward width (reference: 512)")


class Attention(nn.Module):
    """Multi-head self-attention; ``locality=True`` is LSA (learned temperature, no diagonal)."""

    def __init__(self, dim: int, heads: int, dim_head: int, locality: bool):
        super().__init__()
        self.heads, self.dim_head, self.locality = heads, dim_head, locality
        self.qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.out = nn.Linear(heads * dim_head, dim)
        if locality:
            self.log_temperature = nn.Parameter(torch.tensor(math.log(dim_head ** -0.5)))

    def forward(self, h):
        B, T, _ = h.shape
        q, k, v = self.qkv(h).view(B, T, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        scale = self.log_temperature.exp() if self.locality else self.dim_head ** -0.5
        scores = (q @ k.transpose(-1, -2)) * scale
        if self.locality:
            eye = torch.eye(T, dtype=torch.bool, device=h.device)
            scores = scores.masked_fill(eye, float("-inf"))
        pattern = scores.softmax(-1)
        mixed = (pattern @ v).transpose(1, 2).reshape(B, T, self.heads * self.dim_head)
        return self.out(mixed), pattern


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig, locality: bool):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.dim_head, locality)
        self.ln2 = nn.LayerNorm(cfg.dim)
        self.ff1 = nn.Linear(cfg.dim, cfg.mlp_dim)
        self.ff2 = nn.Linear(cfg.mlp_dim, cfg.dim)

    def forward(self, h, record: dict, prefix: str):
        a, pattern = self.attn(self.ln1(h))
        h = h + a
        h = h + self.ff2(F.gelu(self.ff1(self.ln2(h))))
        record[prefix + "attn"] = pattern
        record[prefix + "out"] = h
        return h


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/p)(W/p), C p p], patches in row-major order."""
    B, C, H, W = x.shape
    x = x.view(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def shifted_copies(x: torch.Tensor, s: int) -> torch.Tensor:
    """x and its four diagonal shifts by s pixels (zero fill), stacked on channels: [B, 5C, H, W]."""
    H, W = x.shape[-2:]
    padded = F.pad(x, (s, s, s, s))
    crops = [padded[..., s + dr: s + dr + H, s + dc: s + dc + W]
             for dr, dc in ((-s, -s), (-s, s), (s, -s), (s, s))]
    return torch.cat([x, *crops], dim=1)


def sincos_2d(gh: int, gw: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos positions [gh * gw, dim] (dim divisible by 4)."""
    y, x = torch.meshgrid(torch.arange(gh, dtype=torch.float32),
                          torch.arange(gw, dtype=torch.float32), indexing="ij")
    omega = 1.0 / (10000 ** (torch.arange(dim // 4, dtype=torch.float32) / max(dim // 4 - 1, 1)))
    y = y.flatten()[:, None] * omega[None]
    x = x.flatten()[:, None] * omega[None]
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)


class _ViTBase(nn.Module):
    def forward_embedded(self, e, acts: bool = False):
        record = {"embed": e}
        h = e
        for i, block in enumerate(self.blocks):
            h = block(h, record, f"layers.{i}.")
        r = self.pool(h)
        record["readout"] = r
        out = self.head(self.final_ln(r))
        return (out, record) if acts else out

    def forward(self, x, acts: bool = False):
        return self.forward_embedded(self.embed(x), acts)


class SmallDataViT(_ViTBase):
    def __init__(self, cfg: ViTConfig, image_shape, n_outputs: int):
        super().__init__()
        C, H, W = image_shape
        self.p = cfg.patch
        n = (H // cfg.patch) * (W // cfg.patch)
        patch_dim = 5 * C * cfg.patch * cfg.patch
        self.patch_ln = nn.LayerNorm(patch_dim)
        self.patch_proj = nn.Linear(patch_dim, cfg.dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, cfg.dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(cfg, locality=True) for _ in range(cfg.depth))
        self.final_ln = nn.LayerNorm(cfg.dim)
        self.head = OutputHead(cfg.dim, n_outputs)

    def embed(self, x):
        tokens = self.patch_proj(self.patch_ln(patchify(shifted_copies(x, self.p // 2), self.p)))
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + self.pos_embed

    @staticmethod
    def pool(h):
        return h[:, 0]


class SimpleViT(_ViTBase):
    def __init__(self, cfg: ViTConfig, image_shape, n_outputs: int):
        super().__init__()
        C, H, W = image_shape
        self.p = cfg.patch
        patch_dim = C * cfg.patch * cfg.patch
        self.patch_ln = nn.LayerNorm(patch_dim)
        self.patch_proj = nn.Linear(patch_dim, cfg.dim)
        self.token_ln = nn.LayerNorm(cfg.dim)
        self.register_buffer("pos_table", sincos_2d(H // cfg.patch, W // cfg.patch, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg, locality=False) for _ in range(cfg.depth))
        self.final_ln = nn.LayerNorm(cfg.dim)
        self.head = OutputHead(cfg.dim, n_outputs)

    def embed(self, x):
        tokens = self.token_ln(self.patch_proj(self.patch_ln(patchify(x, self.p))))
        return tokens + self.pos_table

    @staticmethod
    def pool(h):
        return h.mean(1)


def image_shape_of(task) -> tuple[int, int, int]:
    from ..errors import InputError

    shape = getattr(task, "image_shape", None)
    if shape is None:
        raise InputError("task", f"{type(task).__name__} has no images",
                         "an image task (synthetic_images, cifar10, svhn)")
    return tuple(shape)


def _check_patch(cfg: ViTConfig, shape, sincos: bool) -> None:
    from ..errors import InputError

    if shape[1] % cfg.patch or shape[2] % cfg.patch:
        raise InputError("model.params.patch", f"{cfg.patch} does not divide {shape[1]}x{shape[2]}",
                         "a divisor of the image size")
    if sincos and cfg.dim % 4:
        raise InputError("model.params.dim", f"{cfg.dim} is not divisible by 4 (2-D sin-cos)",
                         "a multiple of 4")


@register_model("vit", ViTConfig, "ViT for small datasets: shifted patch tokens, locality "
                "self-attention, class token (images)")
def build_vit(cfg: ViTConfig, task) -> nn.Module:
    shape = image_shape_of(task)
    _check_patch(cfg, shape, sincos=False)
    return SmallDataViT(cfg, shape, task.n_outputs)


@register_model("simple_vit", ViTConfig, "SimpleViT: 2-D sin-cos positions, mean pooling (images)")
def build_simple_vit(cfg: ViTConfig, task) -> nn.Module:
    shape = image_shape_of(task)
    _check_patch(cfg, shape, sincos=True)
    return SimpleViT(cfg, shape, task.n_outputs)

