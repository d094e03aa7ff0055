"""Made-up tables for every registered claim, one module per paper wing: ``TABLES = {claim name:
{status: () -> table rows}}``. ``tests/test_claim_verdicts.py`` feeds each claim the tables of
each status and checks it returns that status: every rule can say PASS, FAIL and INCONCLUSIVE
(except what a claim's ``cannot`` declares, with its reason)."""
