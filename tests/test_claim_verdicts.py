"""Every registered claim can say all three verdicts, and declares what it compares.

For each claim of the registry: a statistic, a comparison and at least one bar, every bar with a
source; and, for each of PASS, FAIL and INCONCLUSIVE that the claim does not declare impossible
(``cannot``, with its reason), a made-up table in ``tests/claim_tables/<wing>.py`` on which its
check returns exactly that status."""

import importlib
import pkgutil

import pytest

import claim_tables
from biaslab.experiments.claims import CLAIM, STATUSES, claims_of


def _tables() -> dict:
    out: dict = {}
    for mod in pkgutil.iter_modules(claim_tables.__path__):
        tables = importlib.import_module(f"claim_tables.{mod.name}").TABLES
        overlap = set(out) & set(tables)
        assert not overlap, f"claims given tables twice: {overlap}"
        out.update(tables)
    return out


TABLES = _tables()
CLAIMS = claims_of(CLAIM)


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.name)
def test_claim_declares_statistic_comparison_and_sourced_bars(claim):
    assert claim.statistic and claim.comparison, claim.name
    assert claim.bars, f"{claim.name} has no bar"
    assert all(b.source.strip() for b in claim.bars)


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.name)
@pytest.mark.parametrize("status", STATUSES)
def test_claim_can_say_each_verdict(claim, status):
    if status in claim.cannot:
        assert claim.cannot[status].strip(), f"{claim.name}: say why it cannot give {status}"
        return
    assert claim.name in TABLES, f"no made-up tables for {claim.name} in tests/claim_tables/"
    assert status in TABLES[claim.name], f"{claim.name}: no made-up table that must give {status}"
    verdict = claim.check(TABLES[claim.name][status]())
    assert verdict.status == status, f"{claim.name}: expected {status}, got {verdict.status}: {verdict.summary}"


def test_no_tables_for_claims_that_are_not_registered():
    names = {c.name for c in claims_of()}
    assert set(TABLES) <= names, sorted(set(TABLES) - names)
