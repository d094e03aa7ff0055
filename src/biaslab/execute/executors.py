"""Where stacks train: the ``--executor`` options of ``run`` and ``reproduce``, in one place.

``local`` (default) trains in this process or in ``--workers`` processes; ``ray`` sends each
stack to a Ray cluster as one task. Either way this process alone writes the store.
"""

from __future__ import annotations

import contextlib

EXECUTORS = ("local", "ray")


def add_executor_arguments(parser) -> None:
    parser.add_argument("--executor", default="local",
                        help="local (this machine) or ray (one task per stack on a Ray cluster)")
    parser.add_argument("--address", help="ray: the cluster's host:port (default: RAY_ADDRESS, "
                                          "else a cluster on this machine, else a new local one)")
    parser.add_argument("--ray-cpus-per-task", type=int, default=None,
                        help="ray: CPUs (and intra-op threads) of each stack's task (default 1)")
    parser.add_argument("--ray-gpus-per-task", type=float, default=None,
                        help="ray: GPU share of each task, e.g. 0.25 = four stacks per GPU "
                             "(default 0: CPU tasks)")


@contextlib.contextmanager
def open_executor(args):
    """Yields ``(device, pool)`` for ``run_experiment(..., device, pool=pool)``; ``pool`` is
    None for the local executor. Bad options end in an InputError before anything is written."""
    from ..errors import InputError

    executor = getattr(args, "executor", "local")
    if executor not in EXECUTORS:
        raise InputError("executor", f"unknown executor {executor!r}", ", ".join(EXECUTORS))
    if executor == "local":
        from .local import resolve_device

        for flag in ("address", "ray_cpus_per_task", "ray_gpus_per_task"):
            if getattr(args, flag, None) is not None:
                name = flag.replace("_", "-")
                raise InputError(name, f"--{name} applies to the ray executor only", "--executor ray")
        yield resolve_device(args.device), None
        return
    from .ray import RayPool, import_ray, ray_device

    cpus = 1 if args.ray_cpus_per_task is None else args.ray_cpus_per_task
    gpus = 0.0 if args.ray_gpus_per_task is None else args.ray_gpus_per_task
    if cpus <= 0:
        raise InputError("ray-cpus-per-task", f"{cpus} is not positive", "an integer >= 1")
    if not 0 <= gpus < float("inf"):  # NaN fails this too
        raise InputError("ray-gpus-per-task", f"{gpus} is not a GPU share", "a finite F >= 0, e.g. 0.25")
    import_ray()
    device = ray_device(args.device, gpus)
    with RayPool(args.address, cpus, gpus) as pool:
        yield device, pool
