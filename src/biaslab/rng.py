"""Counter-based random numbers: pure tensor functions of (key, counter).

Why not ``torch.Generator``? A stack trains M members at once inside ``vmap``; each member
must see exactly the numbers it would see if trained alone with the same seed, whatever M is,
on any device, and under ``torch.compile``. Stateful generators cannot be vmapped and their
streams depend on how many numbers were drawn before. A hash of (member seed, stream, step,
element index) has none of these problems: it is a pure function, so it vmaps, compiles, and
is reproducible bit for bit on CPU and GPU.

The hash is the 32-bit "lowbias32" integer finaliser (Chris Wellons), applied in int64
arithmetic with explicit masking; int64 products wrap modulo 2^64 on every backend, which
leaves the low 32 bits exact.
"""

from __future__ import annotations

import math

import torch

_MASK32 = 0xFFFFFFFF


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Mix 32-bit values held in an int64 tensor; returns values in [0, 2^32)."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    x = x ^ (x >> 16)
    return x


def derive(key: torch.Tensor, *salts: int | torch.Tensor) -> torch.Tensor:
    """A new key from a key and salts (stream ids, step numbers). Shape of ``key`` is kept."""
    k = torch.as_tensor(key, dtype=torch.int64)
    for s in salts:
        s = torch.as_tensor(s, dtype=torch.int64, device=k.device)
        k = hash32(k * 0x9E3779B1 + hash32(s + 0x632BE5AB))
    return k


def bits32(key: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform 32-bit integers of ``shape`` (int64 in [0, 2^32)) from a scalar key."""
    key = torch.as_tensor(key, dtype=torch.int64)
    n = math.prod(shape)
    counter = torch.arange(n, dtype=torch.int64, device=key.device).reshape(shape)
    return hash32(hash32(counter + key * 0x85EBCA77) ^ (key >> 3))


def randint(key: torch.Tensor, shape: tuple[int, ...], high: int, low: int = 0) -> torch.Tensor:
    """Integers uniform in [low, high). Modulo bias is below (high-low)/2^32."""
    return low + bits32(key, shape) % (high - low)


def uniform(key: torch.Tensor, shape: tuple[int, ...], dtype=torch.float32) -> torch.Tensor:
    """Floats uniform in (0, 1): 24 random bits, offset by half a step so 0 never occurs."""
    return ((bits32(key, shape) >> 8).to(dtype) + 0.5) / float(1 << 24)


def normal(key: torch.Tensor, shape: tuple[int, ...], dtype=torch.float32) -> torch.Tensor:
    """Standard normal samples by Box-Muller from two independent uniform streams."""
    u1 = uniform(derive(key, 1), shape, torch.float32)
    u2 = uniform(derive(key, 2), shape, torch.float32)
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.to(dtype)


def key_of(seed: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The key tensor for an integer seed."""
    return torch.tensor(int(seed) & _MASK32, dtype=torch.int64, device=device)
