"""The bank's ledger (``Ledger``), a SQLite database; see ``services.ledger.ledger``."""

from services.ledger.auth import LOCKOUT_SECONDS, MAX_LOCKOUT_SECONDS, MAX_LOGIN_FAILURES
from services.ledger.ledger import DEMO_ACCOUNTS, Ledger
from services.ledger.money import MAX_AMOUNT, MAX_BALANCE, Kind
from services.ledger.store import SCHEMA_VERSION

__all__ = [
    "DEMO_ACCOUNTS",
    "LOCKOUT_SECONDS",
    "MAX_AMOUNT",
    "MAX_BALANCE",
    "MAX_LOCKOUT_SECONDS",
    "MAX_LOGIN_FAILURES",
    "SCHEMA_VERSION",
    "Kind",
    "Ledger",
]
