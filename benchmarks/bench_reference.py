"""Issue 26: the lab against loops that do what the papers' reference code does, on a CPU.

Every pair is timed in interleaved rounds (each round runs every configuration once, in turn, so
a busy neighbour slows all of them alike), on one intra-op thread, by the process's CPU time
(user + system: with one thread it is the wall time of an idle machine, and it does not count
time the scheduler gave the core to another job). Printed per pair: the median ratio over the
rounds (reference time / lab time, > 1 = the lab is faster) and its spread (min - max).

Pairs and the reference code each loop follows (read with `fetch`; none of it is copied here):

- ``train1``: one model-step of the sharpness paper's reference model (2-layer post-LN encoder,
  d 128, 2 heads, FFN 128, positions concatenated; batch 1024, n 20, MSE on {0,1}): the lab's
  stack of one against lacoco-lab/sensitivity-hardness ``src/training.py`` ``train`` (per step:
  ``sample_batch`` on the host RNG, ``get_output_loss_acc`` of ``src/utils2.py``, zero_grad,
  backward, ``torch.optim.AdamW`` step, ``loss.item()`` twice and ``batch_accuracy.item()``) on
  the module of ``src/model.py`` ``TorchModel`` (``nn.TransformerEncoder``).
- ``train8``: a stack of 8 against that loop run for 8 models one after another.
- ``grokking``: a full-batch epoch of the grokking model ((a + b) mod p, d 128) for a stack of
  3 seeds against estija/sensitivity ``language/sens_addition.py`` ``train_and_evaluate`` run for
  the 3 seeds one after another: one module, ``optim.AdamW(model.parameters(), lr=0.001,
  weight_decay=1.0)`` as the reference constructs it (torch's defaults, which on a CPU are its
  per-tensor implementation), cross-entropy on the whole train split, then ``loss.item()`` and
  the accuracy ``(predicted == y).sum().item()`` it records every epoch. Same model and FLOPs
  on both sides: the lab's grokking module (the reference's MLP also runs on the two positions
  it never reads; ours does not, so the reference's own module would do more work), the batch
  held as one tensor (the reference collates it through a full-batch DataLoader every epoch:
  left out, a stricter baseline), and neither side measures (the reference's per-epoch
  sensitivity forwards and the lab's probes are left out).
- ``grokking-foreach``: the same loop with ``AdamW(foreach=True)``, the faster multi-tensor
  update a tuned loop would ask for (``bench_grokking.py``'s ``one_at_a_time``): stricter than
  the reference, shown beside it.
- ``grokking-released``: the reference's training epoch as released, for what a researcher who
  runs the authors' script pays: its ``SimpleTransformer`` (``nn.MultiheadAttention`` over the
  three positions, the MLP on all three, the last read out: more FLOPs than the lab's module,
  which runs the MLP on the one position it reads), the full-batch ``DataLoader`` of
  ``ModAddDataset`` (two tensors made per pair, collated every epoch), the optimizer, loss and
  accuracy as above; its per-epoch sensitivity forwards left out as before.

The measurement phase and exact sensitivity (``bench_measure_speed.py``), LAWT training
(``bench_lawt.py``) and LAWT greedy decoding against facebookresearch/LAWT ``src/model``'s
``generate`` (``bench_decoding.py``) have their own scripts; docs/benchmarks.md lists them.

    python benchmarks/bench_reference.py --rounds 7          # the full comparison (minutes)
    python benchmarks/bench_reference.py --quick             # smoke test: tiny sizes, 2 rounds
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import torch
import torch.nn as nn

from biaslab import rng
from biaslab.models import build_model
from biaslab.tasks import make_task
from biaslab.train import Member, Stack, TrainConfig
from biaslab.train.optim import adamw_init
from biaslab.train.trainer import make_step


class ReferenceModel(nn.Module):
    """The structure of sensitivity-hardness ``TorchModel``: token and position embeddings of
    d / 2 concatenated, ``nn.TransformerEncoder`` (post-LN, ReLU, FFN = d, dropout 0), a linear
    head read at the last position."""

    def __init__(self, d: int, heads: int, layers: int, n: int):
        super().__init__()
        self.embedding = nn.Embedding(2, d // 2)
        self.positional = nn.Embedding(n, d // 2)
        layer = nn.TransformerEncoderLayer(d, heads, dim_feedforward=d, dropout=0.0,
                                           activation="relu", batch_first=True)
        self.encoders = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, 1)

    def forward(self, x):
        pos = self.positional(torch.arange(x.size(1))).repeat(x.size(0), 1, 1)
        h = self.encoders(torch.cat([self.embedding(x), pos], -1))
        return self.head(h)[:, -1, :].view(-1)


def reference_steps(size: dict, models: int, seed: int = 0):
    """One call = one training step of each of ``models`` reference models, in turn."""
    random.seed(seed)
    torch.manual_seed(seed)
    nets = [ReferenceModel(size["d"], size["heads"], size["layers"], size["n"]) for _ in range(models)]
    opts = [torch.optim.AdamW(m.parameters(), lr=3e-4) for m in nets]
    criterion = nn.MSELoss()
    logged = {"loss": 0.0, "acc": 0.0, "last": 0.0}

    def step():
        for model, opt in zip(nets, opts):
            n = random.randint(size["n"], size["n"])  # sample_batch: min_len = max_len
            x = torch.randint(0, 2, (size["batch"], n))
            y = x.sum(1) % 2  # Parity
            out = model(x)
            loss = criterion(out, y.float())
            acc = ((out > 0.5) == y).float().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            logged["loss"] += loss.item() / 100  # the reference's logging_loss, logging_acc
            logged["acc"] += acc.item() / 100
            logged["last"] = loss.item()  # and last_loss, read every step
    return step


def lab_steps(size: dict, models: int):
    """One call = one step of the lab's trainer on a stack of ``models`` reference models."""
    task = make_task("parity", {"n": size["n"]})
    model = {"d_model": size["d"], "n_heads": size["heads"], "n_layers": size["layers"],
             "d_ff": size["d"], "qkv_init": "xavier"}
    stack = Stack("transformer", model, task, [Member(seed=s, lr=3e-4, weight_decay=0.01)
                                               for s in range(models)])
    step_fn = make_step(stack, TrainConfig(batch=size["batch"], loss="mse"))
    state = {"params": stack.params, "opt": adamw_init(stack.params), "t": 0}
    lr, wd, clip = stack.hyper("lr"), stack.hyper("weight_decay"), stack.hyper("clip_norm")
    active = torch.ones(models, dtype=torch.bool)

    def step():
        state["params"], state["opt"], _, _ = step_fn(
            state["params"], state["opt"], torch.tensor(state["t"]), lr, wd, clip, active,
            stack.buffers, stack.task_states, stack.seed_keys)
        state["t"] += 1
    return step


def sens_addition_epochs(model: nn.Module, batches, epochs: int) -> None:
    """The training epochs of sens_addition.py's ``train_and_evaluate`` on ``model``: its optimizer
    and loss, every batch of ``batches`` once per epoch, then the ``loss.item()`` and accuracy it
    records every epoch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.001, weight_decay=1.0)
    criterion = nn.CrossEntropyLoss()
    train_losses, train_accuracies = [], []
    for _ in range(epochs):
        model.train()
        for x_batch, y_batch in batches:
            optimizer.zero_grad()
            outputs = model(x_batch)
            loss = criterion(outputs, y_batch)
            loss.backward()
            optimizer.step()
        train_losses.append(loss.item())
        _, predicted = torch.max(outputs.data, 1)
        train_accuracies.append((predicted == y_batch).sum().item() / y_batch.size(0))


def reference_grokking(task, model_params: dict, seeds: list, epochs: int) -> None:
    """sens_addition.py's training epochs for each seed in turn on the lab's module, the batch
    held as one tensor (measurements left out)."""
    for seed in seeds:
        torch.manual_seed(seed)
        x, y = task.sample(task.make_state(seed), torch.tensor(0), task.n_train)
        sens_addition_epochs(build_model("grokking", model_params, task, seed=seed), [(x, y)], epochs)


class ReleasedGrokkingModel(nn.Module):
    """The structure of sens_addition.py's ``SimpleTransformer``: token and position
    embeddings, ``nn.MultiheadAttention`` on [L, B, d], fc1-ReLU-fc2 on every position, the
    unembedding of the last one."""

    def __init__(self, vocab: int, seq_len: int, d: int, heads: int, d_ff: int, n_out: int):
        super().__init__()
        self.token_embed = nn.Embedding(vocab, d)
        self.pos_embed = nn.Parameter(torch.zeros(seq_len, d))
        self.attention = nn.MultiheadAttention(embed_dim=d, num_heads=heads, dropout=0.0)
        self.fc1, self.relu, self.fc2 = nn.Linear(d, d_ff), nn.ReLU(), nn.Linear(d_ff, d)
        self.fc_out = nn.Linear(d, n_out)

    def forward(self, src):
        e = (self.token_embed(src) + self.pos_embed).transpose(0, 1)
        a, _ = self.attention(e, e, e)
        x = self.fc2(self.relu(self.fc1(a.transpose(0, 1))))
        return self.fc_out(x[:, -1, :])


class PairDataset(torch.utils.data.Dataset):
    """``ModAddDataset``: numpy rows, two tensors made per item."""

    def __init__(self, inputs, targets):
        self.inputs, self.targets = inputs, targets

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, idx):
        return (torch.tensor(self.inputs[idx], dtype=torch.long),
                torch.tensor(self.targets[idx], dtype=torch.long))


def released_grokking(task, model_params: dict, seeds: list, epochs: int) -> None:
    """sens_addition.py's epochs as released (model, DataLoader), measurements left out."""
    for seed in seeds:
        torch.manual_seed(seed)
        x, y = task.sample(task.make_state(seed), torch.tensor(0), task.n_train)
        loader = torch.utils.data.DataLoader(PairDataset(x.numpy(), y.numpy()),
                                             batch_size=len(x), shuffle=False)
        model = ReleasedGrokkingModel(task.vocab_size, task.seq_len, model_params["d_model"],
                                      model_params["n_heads"], model_params["d_ff"], task.n_outputs)
        sens_addition_epochs(model, loader, epochs)


def grokking_pair(p: int, epochs: int, members: int, foreach: bool = False, released: bool = False):
    from bench_grokking import one_at_a_time, stacked

    task = make_task("modular", {"p": p, "train_fraction": 0.4})
    model = {"d_model": 128, "n_heads": 4, "d_ff": 512}
    seeds = list(range(members))
    lab = lambda: stacked(task, model, seeds, epochs, torch.device("cpu"))  # noqa: E731
    if foreach:
        return lab, lambda: one_at_a_time(task, model, seeds, epochs, torch.device("cpu"))
    if released:
        return lab, lambda: released_grokking(task, model, seeds, epochs)
    return lab, lambda: reference_grokking(task, model, seeds, epochs)


def cpu_seconds(fn, calls: int) -> float:
    t0 = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - t0) / calls


def interleaved(pairs: dict, rounds: int, calls: dict) -> dict:
    """name -> list of per-round ratios (reference / lab); configurations run in turn."""
    ratios = {name: [] for name in pairs}
    for name, (lab, ref) in pairs.items():  # warm-up: first calls allocate and build caches
        lab(), ref()
    for r in range(rounds):
        for name, (lab, ref) in pairs.items():
            order = [(lab, "lab"), (ref, "ref")] if r % 2 == 0 else [(ref, "ref"), (lab, "lab")]
            t = {who: cpu_seconds(fn, calls[name]) for fn, who in order}
            ratios[name].append(t["ref"] / t["lab"])
    return ratios


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, 2 rounds")
    ap.add_argument("--pairs", nargs="*", choices=["train1", "train8", "grokking", "grokking-foreach",
                                                     "grokking-released"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        size = {"d": 16, "heads": 2, "layers": 1, "n": 6, "batch": 32}
        rounds, p, epochs = 2, 7, 2
        calls = {"train1": 4, "train8": 1, "grokking": 1, "grokking-foreach": 1, "grokking-released": 1}
    else:
        size = {"d": 128, "heads": 2, "layers": 2, "n": 20, "batch": 1024}
        rounds, p, epochs = args.rounds, 31, 60
        calls = {"train1": 8, "train8": 1, "grokking": 1, "grokking-foreach": 1, "grokking-released": 1}
    build = {
        "train1": lambda: (lab_steps(size, 1), reference_steps(size, 1)),
        "train8": lambda: (lab_steps(size, 8), reference_steps(size, 8)),
        "grokking": lambda: grokking_pair(p, epochs, 3),
        "grokking-foreach": lambda: grokking_pair(p, epochs, 3, foreach=True),
        "grokking-released": lambda: grokking_pair(p, epochs, 3, released=True),
    }
    pairs = {name: build[name]() for name in (args.pairs or build)}
    print(f"# issue 26 reference benchmark on {platform.processor() or 'cpu'} "
          f"({torch.get_num_threads()} thread), torch {torch.__version__}; {rounds} interleaved "
          f"rounds, CPU time; size {size}")
    for name, rs in interleaved(pairs, rounds, calls).items():
        print(f"{name:<10} ratio {statistics.median(rs):.3f}x (min {min(rs):.3f}, max {max(rs):.3f}, "
              f"{len(rs)} rounds)")


if __name__ == "__main__":
    main()
