"""The Ray executor: each stack trains as one Ray task on a cluster; this process writes the store.

The local executor's driver loop does everything else (skipping finished runs, marking runs
running, storing each stack's outcomes as it arrives): ``RayPool`` only replaces the process
pool it submits stacks to. A task returns its outcomes as plain picklable data and never
touches the store, so:

- a worker killed mid-task is retried by Ray (``max_retries``): the stack trains again from its
  start, and its runs land once, when the retry returns;
- a driver killed mid-sweep loses only the stacks in flight: the runs already written are kept,
  and the next invocation trains exactly the missing ones (runs are keyed by id).

Ray is an optional extra (``pip install 'biaslab[ray]'``), imported only here, only when asked for.
Every node of the cluster needs biaslab installed (the same version as the driver).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future

import torch

from ..errors import InputError

#: Times Ray re-runs a task whose worker process died (killed, out of host memory, node lost).
#: Application errors (a bug, bad input) are not retried: they would fail again.
MAX_RETRIES = 3


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("executor", "ray is not installed",
                         "pip install 'biaslab[ray]', or --executor local") from None
    return ray


def ray_device(name: str | None, gpus_per_task: float) -> torch.device:
    """The device tasks train on. It is decided by the workers' resources, not this machine's:
    ``auto`` is cuda when each task gets a GPU share and cpu otherwise."""
    name = name or "auto"
    if gpus_per_task < 0:
        raise InputError("ray-gpus-per-task", f"{gpus_per_task} is negative", "0 (CPU) or a GPU share > 0")
    if name == "auto":
        return torch.device("cuda" if gpus_per_task > 0 else "cpu")
    if name == "cpu":
        if gpus_per_task > 0:
            raise InputError("device", "cpu tasks given a GPU share", "--device cuda, or --ray-gpus-per-task 0")
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if gpus_per_task <= 0:
            raise InputError("ray-gpus-per-task", "cuda tasks need a GPU share",
                             "a share > 0, e.g. 0.25 for four stacks per GPU")
        return torch.device("cuda")  # Ray picks the GPU of each task (CUDA_VISIBLE_DEVICES)
    raise InputError("device", f"unknown device {name!r}", "auto, cpu, cuda")


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast on a wrong ``host:port``: ray.init would retry for minutes before giving up."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InputError("address", f"{address!r} is not host:port", "e.g. 10.0.0.5:6379")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise InputError("address", f"no Ray cluster answers at {address} ({exc.strerror or exc})",
                         "host:port of a running cluster (`ray start --head` prints it)") from None


def train_stack(fn, threads: int, *args):
    """A Ray task: train one stack with ``fn(*args)`` (the local executor's worker function)
    on ``threads`` intra-op threads; returns its outcomes. Named so, the worker's process title
    reads ``ray::train_stack`` while it runs."""
    from ..train.allocator import tune_malloc

    torch.set_num_threads(threads)
    tune_malloc()
    return fn(*args)


class RayPool:
    """Submits stacks to a Ray cluster; ``submit`` returns a concurrent.futures Future, so the
    local executor's driver loop (``run_experiment(pool=...)``) runs unchanged."""

    def __init__(self, address: str | None = None, cpus_per_task: int = 1,
                 gpus_per_task: float = 0.0, max_retries: int = MAX_RETRIES):
        if cpus_per_task < 1:
            raise InputError("ray-cpus-per-task", f"{cpus_per_task} is below 1", "an integer >= 1")
        ray = import_ray()
        self.ray = ray
        self.threads = int(cpus_per_task)
        if address and address != "auto" and "://" not in address:
            check_reachable(address)
        try:
            # No address: RAY_ADDRESS, else a cluster started on this machine, else a new one.
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                     configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError("address", f"cannot connect to a Ray cluster at {address or 'auto'} ({first})",
                             "host:port of a running cluster (`ray start --head` prints it)") from None
        self._task = ray.remote(train_stack).options(
            num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=max_retries,
            retry_exceptions=False)

    def submit(self, fn, *args) -> Future:
        return self._task.remote(fn, self.threads, *args).future()

    def shutdown(self) -> None:
        """Disconnect this driver (the cluster keeps running; tasks still queued are dropped)."""
        if self.ray.is_initialized():
            self.ray.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
