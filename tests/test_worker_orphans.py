"""A worker of the local executor ends when its driver is killed (no orphan keeps training)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

DRIVER = textwrap.dedent("""
    import multiprocessing as mp, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from biaslab.execute.local import _worker_init

    if __name__ == "__main__":
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                 initargs=(1,)) as pool:
            pid = pool.submit(os.getpid).result()
            pool.submit(time.sleep, 120)  # a long stack the killed driver will never collect
            print(pid, flush=True)
            time.sleep(120)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_worker_exits_when_its_driver_is_killed(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    worker = None
    try:
        worker = int(driver.stdout.readline())
        assert _alive(worker)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.time() + 15
        while _alive(worker) and time.time() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived its killed driver"
    finally:
        driver.kill()
        if worker is not None and _alive(worker):  # the test failed: leave no orphan behind
            os.kill(worker, signal.SIGKILL)
