"""The ``linalg`` task family: Charton's matrix problems as seq2seq token tasks (LAWT).

Tasks: transpose, matrix_sum, matrix_vector, matrix_product, eigenvalues, eigenvectors,
invert_matrix, syminverse, singularvalues, singularvectors (``linalg_generators.py`` says what each
computes and in which order), and cotraining (one of T A D M E F I per example, its code token in
front of input and output). Problems are generated on the key's device in float64 with
torch.linalg, encoded with ``encodings.py``, and laid out like the repo's other seq2seq task
(``prefix_parity.py``):

    x = [input tokens, <pad> to encoder_len | <eos>(BOS) answer tokens, <pad> to decoder_len]
    y = [answer tokens <eos> <pad>...]                                  (LongTensor [B, decoder_len])

A matrix is ``V<rows> V<cols>`` and its coefficients; the answer is computed from the unrounded
input (the model sees the rounded one), as in the reference. Rejection is vectorized: a batch is
oversampled, rows whose inversion residual exceeds 1e-10 or whose input or answer the encoder
cannot write are dropped, and the first ``batch`` good rows are kept (rows repeat cyclically in the
vanishing case that too few are good). Sequence length is fixed by the shape, so the reference's
length rejection is a check at construction: a matrix longer than ``max_len`` is an InputError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Optional

import torch
from pydantic import Field

from .. import rng
from ..errors import InputError
from ..registry import TASKS
from .base import Task, TaskParams
from .encodings import get_encoding
from .linalg_generators import DISTRIBUTIONS, PROBLEMS, SQUARE_ONLY, normal64, shapes
from .linalg_vocab import vocabulary

SPLIT_SALT = {"train": 41, "test": 42}
TEST_SET_SALT = 43
COTRAINING_CODES = {"T": "transpose", "A": "matrix_sum", "D": "matrix_vector",
                    "M": "matrix_product", "E": "eigenvalues", "F": "eigenvectors",
                    "I": "invert_matrix"}


class LinalgParams(TaskParams):
    dim: int = Field(default=5, gt=0, description="rows of the base matrix (n for square tasks)")
    cols: Optional[int] = Field(default=None, gt=0, description="columns if rectangular "
                                "(default: square)")
    encoding: str = Field(default="p1000", description="input encoding: p10, p1000, b1999, fp15")
    output_encoding: Optional[str] = Field(default=None, description="answer encoding "
                                           "(default: the input encoding)")
    coeff_bound: float = Field(default=10.0, gt=0, description="A: coefficients U[-A, A]")
    coefficients: Literal["uniform", "gaussian"] = Field(
        default="uniform", description="U[-A, A] or N(0, A^2/3) (same variance)")
    distribution: Literal[DISTRIBUTIONS] = Field(  # type: ignore[valid-type]
        default="semicircle", description="eigenvalue distribution of the train split")
    test_distribution: Optional[Literal[DISTRIBUTIONS]] = Field(  # type: ignore[valid-type]
        default=None, description="eigenvalue distribution of the test split (default: same)")
    input_noise: float = Field(default=0.0, ge=0, description="add N(0, (A s/sqrt 3)^2) to inputs")
    max_len: int = Field(default=4096, gt=2, description="longest token sequence allowed")
    tasks: str = Field(default="TADMEFI", min_length=1, description="cotraining task codes")


@dataclass
class LinalgProblems:
    """One batch of problems: tokens, raw float64 matrices and what the encoder made of them."""

    task: str
    x: torch.Tensor                        # [B, encoder_len + decoder_len] model input
    y: torch.Tensor                        # [B, decoder_len] target tokens, <eos>, <pad>
    inputs: Optional[torch.Tensor] = None  # [B, ri, ci] float64, unrounded (noise included)
    answers: Optional[torch.Tensor] = None  # [B, ro, co] float64, exact
    inputs_rounded: Optional[torch.Tensor] = None   # decoded from the tokens: what the model sees
    answers_rounded: Optional[torch.Tensor] = None  # decoded from the target tokens
    codes: Optional[torch.Tensor] = None   # cotraining: index into the task codes per row
    parts: dict = field(default_factory=dict)  # cotraining: code -> LinalgProblems of its rows
    rows: Optional[torch.Tensor] = None    # cotraining part: rows of the batch it covers

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat name -> tensor dict (for storing a test set with a run)."""
        out = {k: getattr(self, k) for k in ("x", "y", "inputs", "answers", "inputs_rounded",
                                             "answers_rounded", "codes", "rows")
               if getattr(self, k) is not None}
        for code, part in self.parts.items():
            out.update({f"{code}.{k}": v for k, v in part.tensors().items()})
        return out


def select_rows(keep: torch.Tensor, batch: int) -> torch.Tensor:
    """Indices of the first ``batch`` kept rows (cycling through the kept ones if too few), with
    no host synchronisation."""
    order = torch.sort((~keep).to(torch.uint8), stable=True).indices
    n_keep = keep.sum().clamp(min=1)
    return order[torch.arange(batch, device=keep.device) % n_keep]


class LinalgTask(Task):
    """A matrix problem as a token sequence task. Subclasses name the problem (``problem``)."""

    Params: ClassVar = LinalgParams
    target_kind: ClassVar[str] = "sequence"
    problem: ClassVar[str] = ""

    def __init__(self, params: LinalgParams):
        super().__init__(params)
        self.input_encoding = get_encoding(params.encoding, "encoding")
        self.output_encoding = get_encoding(params.output_encoding or params.encoding,
                                            "output_encoding")
        self.vocab = vocabulary(self.input_encoding.name.lower(), self.output_encoding.name.lower())
        self.pad_id, self.eos_id = self.vocab.pad_id, self.vocab.eos_id
        self._check_shapes()

    # -- shapes --------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return self.params.dim

    @property
    def cols(self) -> int:
        return self.params.cols or self.params.dim

    @property
    def dim(self) -> int:
        return self.params.dim

    @property
    def coeff_bound(self) -> float:
        return self.params.coeff_bound

    @property
    def distribution(self) -> str:
        return self.params.distribution

    @property
    def encoding(self):
        """The input encoding (``output_encoding`` for the answers)."""
        return self.input_encoding

    def shapes(self, problem: str | None = None):
        return shapes(problem or self.problem, self.rows, self.cols)

    def _lengths(self, problem: str) -> tuple[int, int]:
        (ri, ci), (ro, co) = self.shapes(problem)
        return (self.vocab.length(self.input_encoding, ri, ci),
                self.vocab.length(self.output_encoding, ro, co))

    def _check_shapes(self) -> None:
        if self.params.cols not in (None, self.params.dim) and self.problem in SQUARE_ONLY:
            raise InputError("cols", f"{self.problem} needs a square matrix, got "
                             f"{self.rows}x{self.cols}", "cols unset or equal to dim")
        for shape in self.shapes():
            if max(shape) > self.vocab.max_dim:
                raise InputError("dim", f"a {shape[0]}x{shape[1]} matrix has no header tokens",
                                 f"at most {self.vocab.max_dim} rows and columns")
        self._check_length()

    def _check_length(self, what: str = "", shorter: str = "a smaller dim") -> None:
        """The longest sequence (input or BOS + answer) against ``max_len``."""
        longest = max(self.encoder_len, self.decoder_len)
        if longest > self.params.max_len:
            raise InputError("dim", f"{what}{self.rows}x{self.cols} needs sequences of {longest} "
                             f"tokens in {self.input_encoding}/{self.output_encoding}",
                             f"at most max_len = {self.params.max_len} ({shorter} or a "
                             f"shorter encoding such as fp15)")

    @property
    def encoder_len(self) -> int:
        return self._lengths(self.problem)[0]

    @property
    def decoder_len(self) -> int:
        """BOS + answer tokens (the target: answer tokens + eos)."""
        return self._lengths(self.problem)[1] + 1

    @property
    def vocab_size(self) -> int:
        return self.vocab.size

    @property
    def seq_len(self) -> int:
        return self.encoder_len + self.decoder_len

    @property
    def n_outputs(self) -> int:
        return self.vocab.size

    def shape_key(self) -> tuple:
        return super().shape_key() + (self.encoder_len, self.decoder_len)

    # -- data ----------------------------------------------------------------------------------
    def _distribution(self, split: str) -> str:
        if split == "test" and self.params.test_distribution:
            return self.params.test_distribution
        return self.params.distribution

    def _may_reject(self, problem: str) -> bool:
        """Whether a row can fail a rejection rule; when none can, nothing is oversampled."""
        p = self.params
        if problem in ("invert_matrix", "syminverse") or p.input_noise > 0:
            return True
        # a float64 Box-Muller normal stays below 9; Laplace/gaussian spectra below 40 n A
        a = p.coeff_bound * (9 / math.sqrt(3.0) if p.coefficients == "gaussian" else 1.0)
        n = max(self.rows, self.cols) + 1
        bound = n * n * a * a + 40 * n * a + n * n * a
        return bound >= min(self.input_encoding.limit, self.output_encoding.limit)

    def _generate(self, problem, key, batch, split, enc_len, out_len, rounded):
        """Oversample, encode, reject; (enc ids [B, enc_len], out ids [B, out_len], out lengths,
        raw input, raw answer, rounded input, rounded answer)."""
        p = self.params
        may_reject = self._may_reject(problem)
        over = batch + batch // 4 + 8 if may_reject else batch
        inp, ans, ok = PROBLEMS[problem](key, over, self.rows, self.cols, p.coeff_bound,
                                         p.coefficients == "gaussian",
                                         distribution=self._distribution(split))
        if p.input_noise > 0:
            std = p.coeff_bound * p.input_noise / math.sqrt(3.0)
            inp = inp + std * normal64(rng.derive(key, 7), tuple(inp.shape))
        enc_ids, _, bad_in = self.vocab.encode(self.input_encoding, inp, enc_len)
        out_ids, lengths, bad_out = self.vocab.encode(self.output_encoding, ans, out_len)
        if may_reject:
            idx = select_rows(ok & ~bad_in & ~bad_out, batch)
            enc_ids, out_ids, lengths, inp, ans = (t[idx] for t in
                                                   (enc_ids, out_ids, lengths, inp, ans))
        inp_r = ans_r = None
        if rounded:
            (ri, ci), (ro, co) = self.shapes(problem)
            inp_r = self.vocab.decode(self.input_encoding, enc_ids, ri, ci)[0]
            ans_r = self.vocab.decode(self.output_encoding, out_ids, ro, co)[0]
        return enc_ids, out_ids, lengths, inp, ans, inp_r, ans_r

    def _layout(self, enc_ids, out_ids, lengths):
        """x = [enc | BOS out], y = [out eos pad...]."""
        B = enc_ids.shape[0]
        bos = torch.full((B, 1), self.eos_id, dtype=torch.int64, device=enc_ids.device)
        pad = torch.full((B, 1), self.pad_id, dtype=torch.int64, device=enc_ids.device)
        y = torch.cat([out_ids, pad], 1).scatter(1, lengths[:, None], self.eos_id)
        return torch.cat([enc_ids, bos, out_ids], 1), y

    def problems(self, state: dict, key: torch.Tensor, batch: int, split: str = "train",
                 rounded: bool = True) -> LinalgProblems:
        """A batch of problems with their float64 matrices (``rounded``: also decode the tokens)."""
        self.check_split(split)
        key = rng.derive(key, SPLIT_SALT[split])
        enc_len, out_len = self._lengths(self.problem)
        enc, out, lengths, inp, ans, inp_r, ans_r = self._generate(
            self.problem, key, batch, split, enc_len, out_len, rounded)
        x, y = self._layout(enc, out, lengths)
        return LinalgProblems(self.problem, x, y, inp, ans, inp_r, ans_r)

    def sample(self, state: dict, key: torch.Tensor, batch: int, split: str = "train"):
        pr = self.problems(state, key, batch, split, rounded=False)
        return pr.x, pr.y

    def test_set(self, seed: int, size: int, device: torch.device | str = "cpu") -> LinalgProblems:
        """A FIXED test set: the same ``size`` problems for the same seed (test distribution)."""
        key = rng.derive(rng.key_of(seed, device), TEST_SET_SALT)
        return self.problems({}, key, size, "test")

    # -- reading predictions -------------------------------------------------------------------
    def decode_answers(self, tokens: torch.Tensor):
        """Predicted answer tokens [B, L] (decoder output: answer tokens, then <eos>) ->
        (float64 [B, ro, co], valid [B]). Malformed rows are invalid, never an error."""
        ro, co = self.shapes()[1]
        return self.vocab.decode(self.output_encoding, tokens, ro, co)

    def correct(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Exact match of the teacher-forced argmax on every non-pad target position."""
        return ((output.argmax(-1) == y) | (y == self.pad_id)).all(-1)

    # -- people --------------------------------------------------------------------------------
    def describe_example(self, x: torch.Tensor, y: torch.Tensor) -> str:
        """Token strings beside the matrices they encode, for one example (x [S], y [L])."""
        (ri, ci), (ro, co) = self.shapes()
        enc = x[: self.encoder_len]
        m_in, ok_in = self.vocab.decode(self.input_encoding, enc[None], ri, ci)
        m_out, ok_out = self.decode_answers(y[None])
        return render_example(self.vocab, enc, m_in[0], ok_in[0], y, m_out[0], ok_out[0])

    def describe(self) -> dict:
        return {"task": self.problem, **self.params.model_dump()}


def render_example(vocab, enc, m_in, ok_in, y, m_out, ok_out) -> str:
    """Input and target token strings, each above the matrix it encodes."""
    def mat(m, ok):
        if not bool(ok):
            return "  (malformed)"
        rows = [" ".join(f"{v: .3g}".rjust(10) for v in r) for r in m.tolist()]
        return "\n".join("  " + r for r in rows)
    return (f"input:  {vocab.text(enc)}\n{mat(m_in, ok_in)}\n"
            f"target: {vocab.text(y)}\n{mat(m_out, ok_out)}")


def _register(name: str, doc: str):
    cls = type(f"Linalg_{name}", (LinalgTask,), {"problem": name, "__doc__": doc})
    TASKS.register(name, doc)(cls)
    return cls


TASK_CLASSES = {name: _register(name, desc) for name, desc in [
    ("transpose", "LAWT: M (r x c) -> M^T, number-encoded seq2seq"),
    ("matrix_sum", "LAWT: [A | B] -> A + B"),
    ("matrix_vector", "LAWT: [A | v] -> A^T v"),
    ("matrix_product", "LAWT: [A | B] -> A^T B"),
    ("eigenvalues", "LAWT: symmetric M -> eigenvalues (descending); distribution=..."),
    ("eigenvectors", "LAWT: symmetric M -> eigenvalues (ascending) over Q"),
    ("invert_matrix", "LAWT: M -> M^-1 (residual rule 1e-10)"),
    ("syminverse", "LAWT: symmetric M with a chosen spectrum -> M^-1"),
    ("singularvalues", "LAWT: M -> singular values (descending)"),
    ("singularvectors", "LAWT: M -> sigma, U, V stacked"),
]}
