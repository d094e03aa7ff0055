"""Artifacts are written to a temporary name and renamed, so a crash never leaves half a file.

A failed write (a full disk) removes its temporary file and raises the OSError; a file that is
missing, truncated or corrupt loads as one InputError naming it. Nothing is ever unpickled:
tensors are safetensors, arrays .npy read with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError


@contextmanager
def _removed_on_failure(tmp: Path):
    try:
        yield
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with _removed_on_failure(tmp):
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, path)
    return path


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise InputError("checkpoint", f"{path} does not exist", "a .safetensors file") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputError("checkpoint", f"{path} is not a readable safetensors file "
                         f"(truncated or corrupt: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                         "a .safetensors file written by biaslab; rerun its run to rewrite it") from None


def save_array(path: Path, array) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    with _removed_on_failure(tmp):
        np.save(tmp, np.asarray(array), allow_pickle=False)
        os.replace(tmp, path)
    return path


def load_array(path: str | os.PathLike) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("artifact", f"{path} does not exist", "a .npy file") from None
    except (ValueError, OSError, EOFError) as exc:
        raise InputError("artifact", f"{path} is not a readable .npy array (truncated or corrupt: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                         "a .npy file written by biaslab; rerun its run to rewrite it") from None
