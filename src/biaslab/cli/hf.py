"""`biaslab measure MEASURE --model-dir PATH --data FILE`: the lab's measures on a Hugging Face
model from a folder (the ``hf`` extra). Without --model-dir, `measure` is the Boolean command."""

from __future__ import annotations

from ..errors import InputError
from .common import emit, set_threads, threads_arg

BOOLEAN = ("sensitivity", "fourier")


def add_model_measure_args(s) -> None:
    s.add_argument("--model-dir", help="a folder written by save_pretrained (a sequence classifier "
                   "or a causal LM, and its tokenizer): measure that model on --data")
    s.add_argument("--data", help="with --model-dir: a text file, one sentence or two "
                   "tab-separated sentences per line")
    s.add_argument("--device", default="auto", help="with --model-dir: auto, cpu or cuda")
    s.add_argument("--draws", type=int, default=4, help="token-wise draws per position (default 4)")
    s.add_argument("--sigma", type=float, default=1.0,
                   help="std of the embedding noise of token-wise sensitivity (default 1.0)")
    s.add_argument("--weight-sigma", type=float, default=0.05,
                   help="std of the weight noise of weight-noise sharpness (default 0.05)")
    s.add_argument("--weight-draws", type=int, default=5, help="noisy models (default 5)")
    s.add_argument("--batch-size", type=int, default=32, help="examples per forward batch")
    s.add_argument("--max-length", type=int, default=128, help="tokens kept per example")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    threads_arg(s)


def cmd_measure_any(args) -> int:
    from .explore import cmd_measure

    if args.model_dir is None:
        if args.what not in BOOLEAN:
            raise InputError("model-dir", f"measure {args.what} needs a model", "--model-dir PATH "
                             "--data FILE (or sensitivity / fourier of a Boolean task)")
        if args.data:
            raise InputError("data", "--data needs --model-dir", "--model-dir PATH")
        return cmd_measure(args)
    return cmd_measure_model(args)


def cmd_measure_model(args) -> int:
    from ..execute.local import resolve_device
    from ..hf.data import encode, read_texts
    from ..hf import MEASURES
    from ..hf.measures import check_options, measure_model

    if args.what not in MEASURES:
        raise InputError("measure", f"{args.what} is a Boolean measure; a model takes",
                         ", ".join(MEASURES))
    check_options(args.what, args.draws, args.sigma, args.weight_sigma, args.weight_draws,
                  args.batch_size)
    if args.task or args.params or args.table:
        raise InputError("task", "a task or --table does not go with --model-dir", "--data FILE")
    if not args.data:
        raise InputError("data", "missing", "--data FILE: one sentence or TSV pair per line")
    if args.max_length < 1:
        raise InputError("max-length", f"{args.max_length}", "an integer >= 1")
    set_threads(args.threads)
    rows = read_texts(args.data)
    device = resolve_device(args.device)
    from ..hf.model import load

    model, tokenizer = load(args.model_dir, device)
    x = encode(tokenizer, rows, model.vocab_size, model.padding_side, args.max_length)
    result = {"model_dir": args.model_dir, "data": args.data, "device": str(device),
              **measure_model(model, x, args.what, seed=args.seed, draws=args.draws,
                              sigma=args.sigma, weight_sigma=args.weight_sigma,
                              weight_draws=args.weight_draws, batch_size=args.batch_size,
                              progress=not args.quiet and not args.json)}
    emit(result, args.json, _table)
    return 0


def _table(r: dict) -> None:
    print(f"{r['model_dir']} ({r['kind']}) on {r['data']}: {r['examples']} examples, "
          f"{r['tokens']} tokens, device {r['device']}")
    rows = []
    for key, label in [("replacement", "token-wise sensitivity, replacement"),
                       ("embedding_noise", f"token-wise sensitivity, embedding noise "
                                           f"(sigma {r.get('embedding_noise', {}).get('sigma')})")]:
        if key in r:
            rows.append((label, f"{r[key]['mean']:.4f} +- {r[key]['stderr']:.4f}"))
    if "weight_noise" in r:
        w = r["weight_noise"]
        rows.append((f"weight-noise sharpness, L1 logit change (sigma {w['sigma']})", f"{w['l1']:.4g}"))
        rows.append(("weight-noise sharpness, argmax flip rate", f"{w['flip']:.4f}"))
    if "layernorm" in r:
        rows.append(("LayerNorm blow-up", f"{r['layernorm']['blowup']:.4g}"))
    if "parameter_norm" in r:
        rows.append(("parameter norm (positions excluded)", f"{r['parameter_norm']:.4g}"))
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"  {a:<{width}}  {b}")
    for key in ("replacement", "embedding_noise"):
        if key in r:
            side = "last" if r["positions_counted_from"] == "end" else "first"
            cells = " ".join(f"{v:.2f}" for v, n in zip(r[key]["per_position"],
                                                        r[key]["tokens_per_position"]) if n)
            print(f"  {key} per position (from the {side} token): {cells}")
