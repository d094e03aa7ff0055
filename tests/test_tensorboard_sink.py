"""`biaslab run --log tensorboard`: the stored curves of the runs, copied into TensorBoard event
files (read back here from the TFRecord bytes), the store unchanged as the record."""

import struct

import pytest

from biaslab.cli import main
from biaslab.store import Store

pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")

TINY = ["n=4", "train_sizes=[4]", "function_seeds=[0]", "random_completions=1", "train.steps=20",
        "train.batch=8", "train.eval_every=10", "model.params.d_model=8", "model.params.n_heads=2",
        "model.params.n_layers=1", "model.params.d_ff=8"]


def _scalars(folder):
    """(tag, step, value) of every scalar in the event files of ``folder``."""
    from tensorboardX.proto.event_pb2 import Event

    out = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):  # TFRecord: length, crc of length, payload, crc of payload
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return out


def test_run_logs_the_stored_curves(tmp_path, capsys):
    store, logs = tmp_path / "s.sqlite", tmp_path / "tb"
    assert main(["run", "lowsens-generalization", "--preset", "cpu", *TINY, "--store", str(store),
                 "--quiet", "--log", "tensorboard", "--log-dir", str(logs)]) == 0
    with Store(store, create=False) as s:
        (run,) = s.runs("lowsens-generalization")
        stored = s.conn.execute("SELECT name, step, value FROM metrics WHERE run_id=? AND step>=0",
                                (run["id"],)).fetchall()
    assert stored, "the experiment stores no curve: nothing to compare"
    got = _scalars(logs / "lowsens-generalization" / run["id"])
    assert sorted((t, s) for t, s, _ in got) == sorted((n, s) for n, s, _ in stored)
    want = {(n, s): v for n, s, v in stored}
    assert all(v == pytest.approx(want[(t, s)], rel=1e-6) for t, s, v in got)
    # Rerunning (every run already finished) rewrites the folder instead of appending twice.
    assert main(["run", "lowsens-generalization", "--preset", "cpu", *TINY, "--store", str(store),
                 "--quiet", "--log", "tensorboard", "--log-dir", str(logs)]) == 0
    assert len(_scalars(logs / "lowsens-generalization" / run["id"])) == len(stored)
