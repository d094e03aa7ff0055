"""Greedy decoding speed of the LAWT model: examples/s of the lab's decoder against LAWT's own.

  reference   facebookresearch/LAWT ``src/model/transformer.py`` ``TransformerModel.generate``
              with its ``fwd`` and its layers' per-step code, written here on the lab's module's
              weights (``lawt_generate``): each step recomputes the masks of the whole prefix
              (``get_masks``) and of the source, embeds the newest position, runs each layer's
              ``MultiHeadAttention`` with its cache (self-attention keys/values concatenated
              per step; the memory's kept as the transposed views ``shape`` makes, which every
              step's matmuls copy), scales the queries, masks the scores, zeroes finished
              positions, projects, takes ``topk(scores, 1)``, and stops once every sequence
              has ended (``unfinished_sents.max() == 0``). The encoder runs once per batch on
              both sides (the lab's ``encode``).
  generate on the lab's parts   the same loop (cache, early exit) over the lab's own
              ``cross_kv`` / ``decode_step``: what the lab's module saves per step, without
              the lab's decoding loop.
  uncached    this lab's decoder before issue 24: every step reruns the decoder over the whole
              prefix (``stack_greedy(..., cached=False, chunk=None)``), vmapped over the stack;
  vmapped     the decoder of issue 24: one position per step with every layer's keys/values
              kept, one vmap over the stack's members (``chunk=None``);
  cached      this lab's decoder now (``stack_greedy``): the same cache, members mapped by the
              lab's rule (on a CPU a plain loop, each position written in place, and a stop once
              every sequence has emitted ``<eos>``, as the reference);

All decode the same fixed test problems with the same weights: an untrained model whose
``<eos>`` logit is pushed down (bias -1e4), so that every loop decodes the full target length as
a trained model does (a trained model's ``<eos>`` comes at the answer's end, one position before
the decoder length; an untrained one may say ``<eos>`` first and let the early exit stop after
one step). Tokens are checked before timing: the lab's loops give identical tokens; LAWT's
arithmetic (queries scaled before the product) rounds differently, so its tokens are compared
and their agreement printed. Timing: interleaved rounds (every loop once per round, the order
alternating), CPU time, median and min-max of the per-round ratios to the reference.

    python benchmarks/bench_decoding.py --device cpu --rounds 7
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from biaslab.models.decoding import module_parts, stack_greedy
from biaslab.registry import TASKS, load_all
from biaslab.train import Member, Stack

MODELS = {"small": {"d_model": 64, "n_heads": 4, "n_enc_layers": 2, "n_dec_layers": 2,
                    "parallel_cross": True},
          "sheet": {"d_model": 512, "n_heads": 8, "n_enc_layers": 6, "n_dec_layers": 1,
                    "parallel_cross": True}}


def reference_greedy(model, xe, dec_len, eos_id=0):
    """LAWT's generate loop over the lab's module parts: cache, argmax, early exit."""
    parts = module_parts(model)
    B = xe.shape[0]
    keep = xe != model.pad_id
    cross_kv = parts.start(parts.encode(xe))
    cache = [None] * len(cross_kv)
    tok = torch.full((B, 1), eos_id, dtype=torch.long, device=xe.device)
    out = torch.full((B, dec_len), model.pad_id, dtype=torch.long, device=xe.device)
    unfinished = torch.ones(B, dtype=torch.bool, device=xe.device)
    for t in range(dec_len):
        logits, cache = parts.step(tok, t, cross_kv, keep, cache)
        nxt = logits[:, -1].argmax(-1)
        nxt = torch.where(unfinished, nxt, torch.full_like(nxt, model.pad_id))
        out[:, t] = nxt
        unfinished = unfinished & (nxt != eos_id)
        if not bool(unfinished.any()):
            break
        tok = nxt[:, None]
    return out


def _lawt_attention(attn, x, mask, layer_cache, kv=None):
    """LAWT ``MultiHeadAttention.forward`` with ``use_cache=True`` on the weights of the lab's
    ``Attention`` ``attn`` (q/k/v/out): x [bs, qlen, dim], mask [bs, klen] or [bs, qlen, klen]."""
    bs, qlen, dim = x.shape
    heads, dh = attn.n_heads, attn.d_head
    shape = lambda t: t.view(bs, -1, heads, dh).transpose(1, 2)  # noqa: E731
    q = shape(attn.q(x))
    if kv is None:
        k, v = shape(attn.k(x)), shape(attn.v(x))
        if "self" in layer_cache:
            k_, v_ = layer_cache["self"]
            k, v = torch.cat([k_, k], dim=2), torch.cat([v_, v], dim=2)
        layer_cache["self"] = (k, v)
    else:
        if "cross" not in layer_cache:
            layer_cache["cross"] = (shape(attn.k(kv)), shape(attn.v(kv)))
        k, v = layer_cache["cross"]
    klen = k.shape[2]
    mask_reshape = (bs, 1, qlen, klen) if mask.dim() == 3 else (bs, 1, 1, klen)
    q = q / math.sqrt(dh)
    scores = torch.matmul(q, k.transpose(2, 3))
    scores.masked_fill_((mask == 0).view(mask_reshape).expand_as(scores), -float("inf"))
    weights = F.softmax(scores.float(), dim=-1).type_as(scores)
    context = torch.matmul(weights, v).transpose(1, 2).contiguous().view(bs, -1, heads * dh)
    return attn.out(context)


def lawt_generate(model, xe, dec_len, eos_id=0):
    """LAWT ``generate`` (greedy) with its decoder ``fwd`` and layers, on the lab's weights."""
    pad = model.pad_id
    bs = xe.shape[0]
    src_enc = model(xe, part="encode")
    src_len = (xe != pad).sum(1)
    max_len = dec_len + 1  # LAWT's generated[0] is <eos> as BOS
    generated = src_len.new(max_len, bs).fill_(pad)
    generated[0].fill_(eos_id)
    positions = torch.arange(max_len, device=xe.device).unsqueeze(1).expand_as(generated)
    cur_len, gen_len, unfinished = 1, src_len.clone().fill_(1), src_len.clone().fill_(1)
    caches = [{} for _ in model.decoder]
    cache_slen = 0
    while cur_len < max_len:
        # fwd(x=generated[:cur_len], lengths=gen_len, positions=..., causal=True, use_cache=True)
        x, slen = generated[:cur_len].transpose(0, 1), cur_len
        assert gen_len.max().item() <= slen
        alen = torch.arange(slen, dtype=torch.long, device=xe.device)
        mask = alen < gen_len[:, None]
        attn_mask = alen[None, None, :].repeat(bs, slen, 1) <= alen[None, :, None]
        src_mask = torch.arange(src_len.max(), dtype=torch.long, device=xe.device) < src_len[:, None]
        pos = positions[:cur_len].transpose(0, 1)
        new = slen - cache_slen
        x, pos, mask, attn_mask = x[:, -new:], pos[:, -new:], mask[:, -new:], attn_mask[:, -new:]
        tensor = model.ln_emb_dec(model.dec_embed(x) + model.pos_embed_dec(pos).expand_as(
            model.dec_embed(x)))
        tensor *= mask.unsqueeze(-1).to(tensor.dtype)
        for layer, cache in zip(model.decoder, caches):
            attn = _lawt_attention(layer.self_attn, tensor, attn_mask, cache)
            output = layer.ln1(tensor + attn)
            attn = _lawt_attention(layer.cross, tensor, src_mask, cache, kv=src_enc)
            output = layer.ln15(output + attn)
            output = output + layer.ff(output)
            tensor = layer.ln2(output)
            tensor *= mask.unsqueeze(-1).to(tensor.dtype)
        cache_slen += tensor.size(1)
        scores = model.project(tensor.transpose(0, 1).data[-1, :, :])
        next_words = torch.topk(scores, 1)[1].squeeze(1)
        generated[cur_len] = next_words * unfinished + pad * (1 - unfinished)
        gen_len.add_(unfinished)
        unfinished.mul_(next_words.ne(eos_id).long())
        cur_len += 1
        if unfinished.max() == 0:
            break
    out = torch.full((bs, dec_len), pad, dtype=torch.long, device=xe.device)
    out[:, :cur_len - 1] = generated[1:cur_len].transpose(0, 1)
    return out


def cpu_seconds(fn):
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", choices=sorted(MODELS), default=None)
    ap.add_argument("--task", default="eigenvalues")
    ap.add_argument("--dim", type=int, default=5)
    ap.add_argument("--encoding", default="p1000")
    ap.add_argument("--batch", type=int, default=None, help="test problems decoded at once")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    load_all()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if not gpu:
        torch.set_num_threads(1)
    name = args.model or ("sheet" if gpu else "small")
    batch = args.batch or (2500 if gpu else 300)
    task = TASKS.get(args.task).from_dict({"dim": args.dim, "encoding": args.encoding,
                                           "output_encoding": args.encoding})
    stack = Stack("lawt", MODELS[name], task, [Member(seed=0)], device=device)
    with torch.no_grad():
        stack.params["out_bias"][:, 0] = -1e4  # <eos> (id 0) never wins: full-length decodes
    model = stack.member(0).eval()
    xe = task.test_set(20211203, batch).x[:, :task.encoder_len].to(device)
    L = task.decoder_len
    print(f"# greedy decoding: {args.task} {args.dim}x{args.dim} {args.encoding} ({task.encoder_len}"
          f"+{L} tokens), model {name} {MODELS[name]}, batch {batch}, device {device} "
          f"({torch.cuda.get_device_name(device) if gpu else platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, fp32")
    ref_label = "reference (LAWT generate, fwd and layers)"
    with torch.no_grad():
        loops = {ref_label: lambda: lawt_generate(model, xe, L),
                 "generate on the lab's parts": lambda: reference_greedy(model, xe, L),
                 "uncached (before issue 24)": lambda: stack_greedy(stack, xe, L, cached=False,
                                                                    chunk=None)[0],
                 "cached, vmapped (issue 24)": lambda: stack_greedy(stack, xe, L, chunk=None)[0],
                 "cached (now)": lambda: stack_greedy(stack, xe, L)[0]}
        tokens = {label: fn() for label, fn in loops.items()}  # also the warm-up
        lab = tokens["cached (now)"]
        assert all(torch.equal(t, lab) for label, t in tokens.items() if label != ref_label), \
            "the lab's loops disagree on tokens"
        agree = (tokens[ref_label] == lab).float().mean().item()
        print(f"tokens: the lab's loops identical; LAWT's arithmetic agrees on {agree:.2%}")
        secs = {label: [] for label in loops}
        for r in range(args.rounds):
            order = list(loops) if r % 2 == 0 else list(reversed(loops))
            for label in order:
                secs[label].append(cpu_seconds(loops[label]))
    rows = {}
    for label, ts in secs.items():
        ratios = [ref / t for ref, t in zip(secs[ref_label], ts)]
        rows[label] = {"examples_per_s": batch / statistics.median(ts),
                       "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                       "ratio_max": max(ratios)}
        print(f"{label}: {rows[label]['examples_per_s']:,.0f} examples/s, "
              f"{rows[label]['ratio_median']:.2f}x the reference (min {min(ratios):.2f}, "
              f"max {max(ratios):.2f}, {len(ratios)} rounds)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"task": args.task, "model": name, "device": str(device), "batch": batch,
                       "rounds": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
