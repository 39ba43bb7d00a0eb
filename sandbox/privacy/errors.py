"""The privacy package's errors, apart from its accountants: a caller that only reports them (the CLI,
``sandbox.__main__``) imports this module without importing opacus or dp-accounting."""

from __future__ import annotations


class PrivacyInputError(ValueError):
    """Impossible privacy parameters; message names the parameter and the allowed range."""


class UnsupportedAccountingError(PrivacyInputError):
    """A possible record that the chosen accountant cannot account; refused, never approximated."""


class AccountingError(RuntimeError):
    """A maintained accountant failed on valid inputs (numerical limits, resource guard)."""


class LedgerError(ValueError):
    """The ledger refuses the run, or the ledger file cannot be read; the message says which and why."""
