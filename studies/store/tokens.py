"""Named API tokens, each `read` or `write`, stored as SHA-256 digests: the database never holds a usable token.

A token is 256 random bits, so a plain digest cannot be reversed by guessing (no slow password hash needed).
Created by `tailtune token create` (shown once), looked up per request, so a revoked or expired token fails at
once. Revoking or expiring every token leaves the API closed: only the operator's --open makes it open.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, BeforeValidator, Field

from studies.definition.spec import NAME_PATTERN
from studies.store.db import Database
from studies.store.tables import token_table
from trainers.errors import UserInputError

Scope = Literal["read", "write"]
PREFIX = "tt_"  # marks a tailtune token in logs a secret scanner reads, and in a user's password manager
# last_used_at is written at most this often per token: a request must not cost a write on every call.
LAST_USE_RESOLUTION = timedelta(minutes=1)


def _utc(value: object) -> object:
    # SQLite returns the stored UTC times without their zone; PostgreSQL's timestamptz carries it.
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


UtcTime = Annotated[AwareDatetime, BeforeValidator(_utc)]


class TokenRecord(BaseModel):
    name: str
    scope: Scope
    created_at: UtcTime
    revoked_at: UtcTime | None = None
    expires_at: UtcTime | None = None
    last_used_at: UtcTime | None = Field(None, description=f"to within {LAST_USE_RESOLUTION}")

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class TokenNameError(UserInputError):
    """No token of that name, or one exists already."""


def create_token(db: Database, *, name: str, scope: Scope,
                 expires_at: datetime | None = None) -> tuple[TokenRecord, str]:
    """A new token and its secret, which is returned here once and stored only as its digest; it is refused
    from `expires_at` on (never, when None)."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise TokenNameError(f"token name {name!r}: use letters, digits, '.', '_' or '-' (at most 100)")
    secret = PREFIX + secrets.token_urlsafe(32)
    try:
        with db.engine.begin() as connection:
            connection.execute(token_table.insert().values(name=name, scope=scope, digest=_digest(secret),
                                                           expires_at=expires_at))
    except sa.exc.IntegrityError:
        raise TokenNameError(f"a token named {name!r} exists; revoke it or choose another name") from None
    return _record(db, name), secret


def list_tokens(db: Database) -> list[TokenRecord]:
    with db.engine.connect() as connection:
        rows = connection.execute(sa.select(token_table).order_by(token_table.c.id)).all()
    return [TokenRecord.model_validate(row._asdict()) for row in rows]


def revoke_token(db: Database, *, name: str) -> TokenRecord:
    with db.engine.begin() as connection:
        revoked = connection.execute(token_table.update()
                                     .where(token_table.c.name == name, token_table.c.revoked_at.is_(None))
                                     .values(revoked_at=sa.func.now()))
    if revoked.rowcount == 0 and not any(token.name == name for token in list_tokens(db)):
        raise TokenNameError(f"no token named {name!r}; `tailtune token list` shows them")
    return _record(db, name)


def scope_of(db: Database, *, secret: str) -> Scope | None:
    """The scope of an unrevoked, unexpired token, or None; records its use. The lookup is by digest, so its
    timing tells nothing of the secret; the final comparison is constant-time as well."""
    digest = _digest(secret)
    with db.engine.connect() as connection:
        row = connection.execute(sa.select(token_table)
                                 .where(token_table.c.digest == digest, token_table.c.revoked_at.is_(None))).first()
    if row is None or not hmac.compare_digest(row.digest, digest):
        return None
    record, now = TokenRecord.model_validate(row._asdict()), datetime.now(UTC)
    if record.expired(now):
        return None
    if record.last_used_at is None or now - record.last_used_at >= LAST_USE_RESOLUTION:
        with db.engine.begin() as connection:
            connection.execute(token_table.update().where(token_table.c.id == row.id).values(last_used_at=now))
    return record.scope


def active_count(db: Database) -> int:
    """Tokens neither revoked nor expired: what `tailtune serve` reports at start."""
    now = datetime.now(UTC)
    return sum(token.revoked_at is None and not token.expired(now) for token in list_tokens(db))


def _record(db: Database, name: str) -> TokenRecord:
    with db.engine.connect() as connection:
        row = connection.execute(sa.select(token_table).where(token_table.c.name == name)).one()
    return TokenRecord.model_validate(row._asdict())


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
