"""A Hugging Face model as a module of the lab's protocols.

Inputs are one LongTensor of *packed* ids, so that the lab's measures (which see a [B, L]
tensor and copy its rows) carry everything a row needs: ``packed = id + V * segment`` for a
real token (V = rows of the input embedding, segment = the tokenizer's token type, 0 when it
has none) and ``-1`` for padding. The padding mask and the segments are recovered from the
packed ids in every forward, so a row keeps them whatever the measure does with it.

Sequence classifiers read their logits [B, C] (right padding, the tokenizer's convention);
causal LMs read the next-token logits [B, V] at the last token (left padding, with position ids
counted from each row's first real token, so a padded row gives the logits it gives alone).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from ..measure.tokenwise import TokenReplacement

PAD = -1  # packed id of a padding position


def _transformers():
    try:
        import transformers
    except ImportError:
        raise InputError("model-dir", "the transformers package is not installed",
                         "pip install 'biaslab[hf]'") from None
    # Its loading bars and warnings would break the one-line contract of errors on stderr.
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def model_kind(config) -> str:
    """'classifier' or 'causal' from the saved architecture name."""
    names = list(getattr(config, "architectures", None) or [])
    if any(n.endswith("ForSequenceClassification") for n in names):
        return "classifier"
    if any(n.endswith("ForCausalLM") or n.endswith("LMHeadModel") for n in names):
        return "causal"
    raise InputError("model-dir", f"architecture {names or 'unknown'} is neither a sequence "
                     "classifier nor a causal LM", "*ForSequenceClassification, *ForCausalLM, "
                     "*LMHeadModel")


def load(model_dir: str, device="cpu"):
    """(HFModel, tokenizer) from a folder written by ``save_pretrained``; eval mode, no grads."""
    transformers = _transformers()
    if not Path(model_dir, "config.json").is_file():
        raise InputError("model-dir", f"{model_dir} has no config.json",
                         "a folder written by save_pretrained (model and tokenizer)")
    try:
        config = transformers.AutoConfig.from_pretrained(model_dir, local_files_only=True)
        kind = model_kind(config)
        auto = (transformers.AutoModelForSequenceClassification if kind == "classifier"
                else transformers.AutoModelForCausalLM)
        hf = auto.from_pretrained(model_dir, local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError("model-dir", f"{model_dir} could not be loaded ({str(exc)[:200]})",
                         "a folder written by save_pretrained (model and tokenizer)") from None
    hf.eval().requires_grad_(False)
    return HFModel(hf, kind).to(device), tokenizer


class TypedTokenReplacement(TokenReplacement):
    """``TokenReplacement`` on packed ids: the id is replaced (the same draws), the segment and
    the padding stay. ``vocab_size`` is V, the packing's base."""

    def copies(self, x, pos, key):
        segment = torch.div(x, self.vocab_size, rounding_mode="floor")  # -1 at padding
        ids = torch.remainder(x, self.vocab_size)
        return super().copies(ids, pos, key) + self.vocab_size * segment[:, None, :]


class HFModel(nn.Module):
    """forward(packed) -> logits [B, C]; embed / forward_embedded for embedding noise."""

    def __init__(self, hf: nn.Module, kind: str):
        super().__init__()
        self.hf = hf
        self.kind = kind
        self.vocab_size = hf.get_input_embeddings().num_embeddings
        pad = getattr(hf.config, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0  # masked out: any id will do

    @property
    def padding_side(self) -> str:
        return "left" if self.kind == "causal" else "right"

    def unpack(self, packed: torch.Tensor):
        """(ids, segments, mask) of packed ids."""
        mask = packed >= 0
        ids = torch.where(mask, torch.remainder(packed, self.vocab_size), self.pad_id)
        segments = torch.where(mask, torch.div(packed, self.vocab_size, rounding_mode="floor"), 0)
        return ids, segments, mask

    def _run(self, mask: torch.Tensor, **inputs) -> torch.Tensor:
        attention = mask.long()
        if self.kind == "causal":
            positions = (attention.cumsum(-1) - 1).clamp(min=0)
            return self.hf(attention_mask=attention, position_ids=positions, **inputs).logits[:, -1]
        return self.hf(attention_mask=attention, **inputs).logits

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        ids, segments, mask = self.unpack(packed)
        extra = {"token_type_ids": segments} if bool(segments.any()) else {}
        return self._run(mask, input_ids=ids, **extra)

    def _segment_embeddings(self):
        embeddings = getattr(self.hf.base_model, "embeddings", None)
        return getattr(embeddings, "token_type_embeddings", None)

    def embed(self, packed: torch.Tensor) -> torch.Tensor:
        """Word embeddings [B, T, D], exactly zero at padding (forward_embedded reads the mask
        from that). A BERT-style model's segment embedding is folded in: its embeddings are a sum,
        so word + type(s) - type(0) plus the type(0) the model adds itself is the original."""
        ids, segments, mask = self.unpack(packed)
        e = self.hf.get_input_embeddings()(ids)
        if bool(segments.any()):
            table = self._segment_embeddings()
            if table is None:
                raise InputError("data", "token types on a model without segment embeddings",
                                 "single sentences, or a BERT-style model")
            e = e + table(segments) - table(torch.zeros_like(segments))
        return e * mask[..., None].to(e.dtype)

    def forward_embedded(self, e: torch.Tensor) -> torch.Tensor:
        return self._run(e.abs().sum(-1) != 0, inputs_embeds=e)


def position_parameters(model: HFModel) -> list[str]:
    """Names of the positional-embedding tables (left out of the parameter norm, as in the lab)."""
    return [n for n, p in model.named_parameters()
            if p.dim() == 2 and ("position_embeddings" in n or n.endswith("wpe.weight"))]
