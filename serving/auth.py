"""API keys with roles, and the one table saying which role may call which endpoints.

A key reads ``rs_<key id>_<secret>``. Only the key id (to find the row) and the SHA-256
of the secret are stored: the secret is 32 random bytes, far beyond guessing, so a fast
hash suffices (a slow KDF is for low-entropy passwords). The stored and computed hashes
are compared in constant time. The plaintext key is returned once, at creation.

Endpoint groups: ``upload`` (analysis API, bulk import, appeals of one's items),
``review`` (the queue and tier-1 decisions), ``review_tier2`` (escalated tasks),
``feed`` (ranked feeds), ``events`` (user events, user reports), ``admin`` (keys,
settings, policy, stats for operators).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import typer
from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from core.contracts import UtcDateTime
from core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from core.storage.db import Base, make_engine, make_session_factory, transaction


class Role(StrEnum):
    UPLOADER = "uploader"
    MODERATOR = "moderator"
    SENIOR_MODERATOR = "senior_moderator"
    ADMIN = "admin"
    FEED = "feed"


class Permission(StrEnum):
    UPLOAD = "upload"
    REVIEW = "review"
    REVIEW_TIER2 = "review_tier2"
    FEED = "feed"
    EVENTS = "events"
    ADMIN = "admin"


# The matrix every route checks. Admin may do everything, including tier-2 review, so
# that a deployment with one operator still works end to end.
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.UPLOADER: frozenset({Permission.UPLOAD}),
    Role.MODERATOR: frozenset({Permission.REVIEW}),
    Role.SENIOR_MODERATOR: frozenset({Permission.REVIEW, Permission.REVIEW_TIER2}),
    Role.FEED: frozenset({Permission.FEED, Permission.EVENTS}),
    Role.ADMIN: frozenset(Permission),
}

KEY_PREFIX = "rs"
_KEY_ID_BYTES = 8
_SECRET_BYTES = 32


@dataclass(frozen=True)
class Principal:
    """Who a request acts as."""

    name: str
    role: Role

    def allows(self, permission: str) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def require(self, permission: Permission | str) -> None:
        if not self.allows(permission):
            raise Forbidden(
                f"role {self.role.value} may not use {Permission(permission).value} endpoints",
                role=self.role.value, permission=str(permission),
            )

    def require_any(self, *permissions: Permission) -> None:
        if not any(self.allows(p) for p in permissions):
            wanted = " or ".join(p.value for p in permissions)
            raise Forbidden(
                f"role {self.role.value} may not use this endpoint (needs {wanted})",
                role=self.role.value,
            )


def allows(role: Role | str, permission: Permission | str) -> bool:
    return Permission(permission) in ROLE_PERMISSIONS[Role(role)]


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class ApiKeyInfo:
    name: str
    role: Role
    key_id: str
    created_at: UtcDateTime
    revoked: bool


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _split(key: str) -> tuple[str, str] | None:
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


# A hash to compare against when the key id is unknown, so an unknown id costs the
# same work as a wrong secret.
_DUMMY_SHA256 = _sha256("reelsift-no-such-key")


class ApiKeyStore:
    """Keys stored as hashes. ``cache_seconds`` > 0 remembers verified keys that long, so
    the feed's hot path skips a database read per request; a revocation then reaches
    other processes within that time (this process forgets the key at once)."""

    def __init__(self, sessions: sessionmaker[Session], cache_seconds: float = 0.0) -> None:
        self.cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[Principal, float]] = {}
        self._cache_lock = threading.Lock()
        self.sessions = sessions

    def create(self, role: Role | str, name: str) -> str:
        """Store a new key for ``name`` and return its plaintext, the only time it exists."""
        try:
            chosen = Role(role)
        except ValueError:
            raise InvalidInput(
                f"unknown role {role!r}; roles: {[r.value for r in Role]}", field="role"
            ) from None
        name = name.strip()
        if not name or len(name) > 128:
            raise InvalidInput("name must be 1 to 128 characters", field="name")
        # Hex keeps '_' out of the key id and secret, so the key splits unambiguously.
        key_id = secrets.token_hex(_KEY_ID_BYTES)
        secret = secrets.token_hex(_SECRET_BYTES)
        try:
            with transaction(self.sessions) as session:
                if session.scalar(select(ApiKeyRow.id).where(ApiKeyRow.name == name)):
                    raise Conflict(f"an API key named {name!r} exists", name=name)
                session.add(
                    ApiKeyRow(
                        key_id=key_id, name=name, role=chosen.value,
                        secret_sha256=_sha256(secret), created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError as exc:
            raise Conflict(f"an API key named {name!r} exists", name=name) from exc
        return f"{KEY_PREFIX}_{key_id}_{secret}"

    def authenticate(self, key: str | None) -> Principal:
        """The principal a key stands for; ``Unauthorized`` for anything else."""
        cached = self.cached(key)
        if cached is not None:
            return cached
        parts = _split(key.strip()) if key else None
        if parts is None:
            raise Unauthorized("missing or malformed API key")
        key_id, secret = parts
        digest = _sha256(secret)
        with transaction(self.sessions) as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id))
            expected = row.secret_sha256 if row is not None else _DUMMY_SHA256
            matches = hmac.compare_digest(expected, digest)
            if row is None or not matches or row.revoked_at is not None:
                raise Unauthorized("invalid or revoked API key")
            principal = Principal(name=row.name, role=Role(row.role))
        if self.cache_seconds > 0:
            with self._cache_lock:
                self._cache[(key_id, digest)] = (principal, time.monotonic() + self.cache_seconds)
        return principal

    def cached(self, key: str | None) -> Principal | None:
        """A recently verified key's principal, without touching the database (or None)."""
        if self.cache_seconds <= 0 or not key:
            return None
        parts = _split(key.strip())
        if parts is None:
            return None
        entry = self._cache.get((parts[0], _sha256(parts[1])))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def revoke(self, name: str) -> None:
        with transaction(self.sessions) as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name))
            if row is None:
                raise NotFound(f"no API key named {name!r}", name=name)
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            key_id = row.key_id
        with self._cache_lock:
            for cache_key in [k for k in self._cache if k[0] == key_id]:
                del self._cache[cache_key]

    def list_keys(self) -> list[ApiKeyInfo]:
        with transaction(self.sessions) as session:
            rows = session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))
            return [
                ApiKeyInfo(
                    name=r.name, role=Role(r.role), key_id=r.key_id, created_at=r.created_at,
                    revoked=r.revoked_at is not None,
                )
                for r in rows
            ]


# -- `reelsift keys` ----------------------------------------------------------------------

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


def _store(database_url: str | None) -> ApiKeyStore:
    """The key store, its database migrated first (a fresh data dir has no tables yet)."""
    from core.storage.db import upgrade
    from serving.settings import get_settings

    settings = get_settings()
    url = database_url
    if url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = settings.db_url
    engine = make_engine(url)
    upgrade(engine)
    return ApiKeyStore(make_session_factory(engine))


_DB_OPTION = typer.Option(
    None, "--database-url", help="database URL (default: the REELSIFT_ settings' database)"
)


@keys_app.command("create")
def create_key(
    role: Role = typer.Option(..., "--role", help="what the key may do"),  # noqa: B008
    name: str = typer.Option(..., "--name", help="who or what holds the key"),
    database_url: str | None = _DB_OPTION,
) -> None:
    """Create a key and print it once: it is stored only as a hash."""
    key = _store(database_url).create(role, name)
    typer.echo(key)
    typer.echo(f"created {role.value} key {name!r}; store it now, it cannot be shown again",
               err=True)


@keys_app.command("list")
def list_keys(database_url: str | None = _DB_OPTION) -> None:
    """List keys (names, roles, ids; never secrets)."""
    for info in _store(database_url).list_keys():
        state = "revoked" if info.revoked else "active"
        typer.echo(f"{info.name}\t{info.role.value}\t{info.key_id}\t"
                   f"{info.created_at.isoformat()}\t{state}")


@keys_app.command("revoke")
def revoke_key(
    name: str = typer.Option(..., "--name"), database_url: str | None = _DB_OPTION
) -> None:
    """Revoke a key at once; requests with it fail from then on."""
    _store(database_url).revoke(name)
    typer.echo(f"revoked {name!r}")
