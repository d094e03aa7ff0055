"""LAWT cotraining: each example is one of several matrix problems, its code token in front.

Codes (the reference's): T transpose, A matrix_sum, D matrix_vector, M matrix_product,
E eigenvalues, F eigenvectors, I invert_matrix. Every row draws its code uniformly from ``tasks``;
input and answer start with the code token (``x = [code, input... | BOS, code, answer...]``,
``y = [code, answer..., <eos>]``), padded to the longest problem. A prediction counts only when its
first token repeats the code (the reference's rule).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from .. import rng
from ..errors import InputError
from ..registry import TASKS
from .linalg import (COTRAINING_CODES, SPLIT_SALT, LinalgProblems, LinalgTask,
                     render_example)


@TASKS.register("cotraining", "LAWT: one of T A D M E F I per example, task token in front")
class Cotraining(LinalgTask):
    problem: ClassVar[str] = "cotraining"

    def __init__(self, params):
        codes = params.tasks
        bad = sorted(set(codes) - set(COTRAINING_CODES))
        if bad or len(set(codes)) != len(codes):
            raise InputError("tasks", f"{codes!r} is not a list of distinct task codes",
                             "letters among " + " ".join(f"{k}={v}" for k, v in
                                                        COTRAINING_CODES.items()))
        self.codes = list(codes)
        super().__init__(params)

    def _check_shapes(self):
        for code in self.codes:
            sub = self.subtask(code)
            sub._check_shapes()
        # each task alone fits; the task code in front (and its echo in the answer) may not
        self._check_length(f"cotraining {self.params.tasks} (the task code included) at ",
                           "a smaller dim, fewer tasks")

    def subtask(self, code: str) -> LinalgTask:
        """The single task behind ``code`` with the same parameters."""
        from .linalg import TASK_CLASSES

        return TASK_CLASSES[COTRAINING_CODES[code]](self.params)

    def shapes(self, problem: str | None = None):
        if problem in (None, "cotraining"):
            raise ValueError("cotraining has one shape per code: call shapes(<problem name>)")
        return super().shapes(problem)

    def code_id(self, code: str) -> int:
        return self.vocab.index[code]

    @property
    def encoder_len(self) -> int:
        return 1 + max(self._lengths(COTRAINING_CODES[c])[0] for c in self.codes)

    @property
    def decoder_len(self) -> int:
        return 2 + max(self._lengths(COTRAINING_CODES[c])[1] for c in self.codes)

    def problems(self, state, key, batch, split="train", rounded=True) -> LinalgProblems:
        self.check_split(split)
        key = rng.derive(key, SPLIT_SALT[split])
        dev = key.device
        which = rng.randint(rng.derive(key, 50), (batch,), len(self.codes))
        Le, Lo = self.encoder_len, self.decoder_len - 1
        x = torch.zeros(batch, Le + Lo + 1, dtype=torch.int64, device=dev)
        y = torch.zeros(batch, Lo + 1, dtype=torch.int64, device=dev)
        parts = {}
        for i, code in enumerate(self.codes):
            problem = COTRAINING_CODES[code]
            enc, out, lengths, inp, ans, inp_r, ans_r = self._generate(
                problem, rng.derive(key, 60 + i), batch, split, Le - 1, Lo - 1, rounded)
            tok = torch.full((batch, 1), self.code_id(code), dtype=torch.int64, device=dev)
            xi, yi = self._layout(torch.cat([tok, enc], 1), torch.cat([tok, out], 1), lengths + 1)
            mine = (which == i)[:, None]
            x, y = torch.where(mine, xi, x), torch.where(mine, yi, y)
            if rounded:  # evaluation path: the raw matrices of this code's rows
                rows = (which == i).nonzero().squeeze(1)
                parts[code] = LinalgProblems(problem, xi[rows], yi[rows], inp[rows], ans[rows],
                                             inp_r[rows], ans_r[rows], rows=rows)
        return LinalgProblems("cotraining", x, y, codes=which, parts=parts)

    def decode_answers(self, tokens: torch.Tensor, codes: torch.Tensor | None = None):
        """Predicted tokens [B, L] -> {code: (rows, float64 [n, ro, co], valid [n])}, rows being
        the examples whose true code (``codes``, indices into ``tasks``) is that code; a
        prediction whose first token is not the code is invalid."""
        if codes is None:
            raise InputError("codes", "cotraining needs each example's true task code",
                             "the codes of the LinalgProblems")
        out = {}
        for i, code in enumerate(self.codes):
            rows = (codes == i).nonzero().squeeze(1)
            t = tokens[rows]
            (ro, co) = self.shapes(COTRAINING_CODES[code])[1]
            mats, valid = self.vocab.decode(self.output_encoding, t[:, 1:], ro, co)
            out[code] = (rows, mats, valid & (t[:, 0] == self.code_id(code)))
        return out

    def describe_example(self, x, y) -> str:
        code = self.vocab.words[int(x[0])]
        if code not in self.codes:
            return f"(unknown task code {code!r})"
        sub = self.subtask(code)
        (ri, ci), (ro, co) = sub.shapes()
        enc = x[1:self.encoder_len]
        m_in, ok_in = self.vocab.decode(self.input_encoding, enc[None], ri, ci)
        m_out, ok_out = self.vocab.decode(self.output_encoding, y[None, 1:], ro, co)
        shown = render_example(self.vocab, enc, m_in[0], ok_in[0], y[1:], m_out[0], ok_out[0])
        return f"task {code} = {sub.problem}\n" + shown
