"""Readers for image data sets in their standard on-disk formats. Nothing is downloaded and
nothing is unpickled: a missing or malformed file is one InputError naming the path expected.

CIFAR-10, binary version (``cifar-10-batches-bin/``): ``data_batch_1.bin`` .. ``data_batch_5.bin``
and ``test_batch.bin``; each record is 1 label byte (0-9) then 3072 pixel bytes, the red, green
and blue 32x32 planes in row-major order (10,000 records = 30,730,000 bytes per file).

SVHN, cropped digits (``train_32x32.mat``, ``test_32x32.mat``): MATLAB v5 files holding
``X`` uint8 [32, 32, 3, N] and ``y`` [N, 1] with labels 1-10, where 10 stands for the digit 0.

Both return (images uint8 [N, 3, 32, 32], labels int64 [N] in 0..9).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_TEST_FILES = ("test_batch.bin",)
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def _need(path: Path, field: str) -> Path:
    if not path.is_file():
        raise InputError(field, f"missing file {path}", "a local copy of the data set (no download)")
    return path


def read_cifar10_file(path: Path, field: str = "task.root") -> tuple[torch.Tensor, torch.Tensor]:
    raw = np.fromfile(_need(Path(path), field), dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise InputError(field, f"{path} has {raw.size} bytes, not a multiple of {CIFAR_RECORD}",
                         "CIFAR-10 binary batches (1 label byte + 3072 pixel bytes per record)")
    rec = raw.reshape(-1, CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise InputError(field, f"{path} has label {int(labels.max())}", "labels 0-9")
    images = rec[:, 1:].reshape(-1, 3, 32, 32)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels)


def read_cifar10(root, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 from ``root`` (the ``cifar-10-batches-bin`` folder or its parent)."""
    root = Path(root)
    if (root / "cifar-10-batches-bin").is_dir():
        root = root / "cifar-10-batches-bin"
    names = CIFAR_TRAIN_FILES if split == "train" else CIFAR_TEST_FILES
    parts = [read_cifar10_file(root / n) for n in names]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def read_svhn(root, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """SVHN cropped digits from ``root`` (the folder holding ``train_32x32.mat``)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = _need(Path(root) / SVHN_FILES[split], "task.root")
    try:
        mat = loadmat(str(path), variable_names=["X", "y"])
    except (MatReadError, ValueError, OSError, NotImplementedError) as exc:
        raise InputError("task.root", f"{path} is not a readable MATLAB v5 file ({exc})",
                         "SVHN train_32x32.mat / test_32x32.mat") from None
    X, y = mat.get("X"), mat.get("y")
    if X is None or y is None or X.ndim != 4 or X.shape[:3] != (32, 32, 3) or \
            y.size != X.shape[3] or X.dtype != np.uint8:
        shape = None if X is None else (X.shape, X.dtype)
        raise InputError("task.root", f"{path} holds X {shape}, not uint8 [32, 32, 3, N] with "
                         "N labels y", "SVHN cropped-digit .mat files")
    labels = y.reshape(-1).astype(np.int64)
    if labels.min() < 1 or labels.max() > 10:
        raise InputError("task.root", f"{path} has labels outside 1-10", "SVHN labels 1-10")
    labels = labels % 10  # SVHN writes the digit 0 as label 10
    images = np.ascontiguousarray(X.transpose(3, 2, 0, 1))  # [N, 3, 32, 32]
    return torch.from_numpy(images), torch.from_numpy(labels)


READERS = {"cifar10": read_cifar10, "svhn": read_svhn}


def write_cifar10_file(path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images uint8 [N, 3, 32, 32] and labels [N] as one CIFAR-10 binary batch (tests)."""
    rec = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(labels), -1)], 1)
    rec.astype(np.uint8).tofile(str(path))


def write_svhn_file(path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images uint8 [N, 3, 32, 32] and digits 0-9 as an SVHN .mat file (tests)."""
    from scipy.io import savemat

    y = np.where(labels == 0, 10, labels).astype(np.uint8)[:, None]
    savemat(str(path), {"X": np.ascontiguousarray(images.transpose(2, 3, 1, 0)), "y": y})
