"""A real Ray cluster for tests: `ray start --head --block` on the loopback address, 2 CPUs,
in its own process group, so the test can kill its workers and tear all of it down by group id.

Ray advertises the machine's routable IP to its own processes even when told 127.0.0.1; the
drivers of the tests connect through 127.0.0.1:PORT all the same.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def env() -> dict:
    """Environment of the cluster and of the drivers: biaslab importable, one thread each."""
    path = os.pathsep.join([SRC, *[p for p in sys.path if p]])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1",
            "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_bin() -> str:
    here = Path(sys.executable).with_name("ray")
    return str(here) if here.exists() else (shutil.which("ray") or "ray")


class Cluster:
    def __init__(self, cpus: int = 2):
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # sockets need a short path
        cmd = [_ray_bin(), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               f"--port={self.port}", f"--num-cpus={cpus}", "--num-gpus=0",
               "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.tmp}",
               "--object-store-memory=100000000"]
        self.proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.pgid = self.proc.pid
        self.log: list[str] = []
        started = threading.Event()

        def read():
            for line in self.proc.stdout:
                self.log.append(line)
                if "Ray runtime started" in line:
                    started.set()
        threading.Thread(target=read, daemon=True).start()
        if not started.wait(120) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("ray start failed:\n" + "".join(self.log[-30:]))

    def processes(self, title_prefix: str = "") -> list[int]:
        """Pids of this cluster's live processes whose title starts with ``title_prefix``: those
        of its process group, and their children (Ray workers start sessions of their own)."""
        procs = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
                with open(f"/proc/{d}/cmdline", "rb") as fh:
                    title = fh.read().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if fields[0] != b"Z":  # a zombie has exited, only waits to be reaped
                procs[int(d)] = (int(fields[1]), int(fields[2]), title)  # ppid, pgid, title
        group = {pid for pid, (_, pgid, _) in procs.items() if pgid == self.pgid}
        ours = group | {pid for pid, (ppid, _, _) in procs.items() if ppid in group}
        return sorted(pid for pid in ours if procs[pid][2].startswith(title_prefix))

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL what is left; wait until every process is gone."""
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 15.0)):
            for pid in self.processes():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + wait
            while time.time() < deadline and self.processes():
                self.proc.poll()
                time.sleep(0.1)
        self.proc.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)
