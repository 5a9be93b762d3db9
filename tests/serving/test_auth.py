from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from core.storage.db import make_session_factory
from serving.auth import (
    ROLE_PERMISSIONS,
    ApiKeyRow,
    ApiKeyStore,
    Permission,
    Principal,
    Role,
    allows,
    keys_app,
)

# The matrix as the routes must enforce it, written out by hand: a change to
# ROLE_PERMISSIONS has to change this table too.
EXPECTED = {
    #                    upload review tier2  feed   events admin
    Role.UPLOADER:         (1,     0,     0,     0,     0,     0),
    Role.MODERATOR:        (0,     1,     0,     0,     0,     0),
    Role.SENIOR_MODERATOR: (0,     1,     1,     0,     0,     0),
    Role.FEED:             (0,     0,     0,     1,     1,     0),
    Role.ADMIN:            (1,     1,     1,     1,     1,     1),
}
COLUMNS = [Permission.UPLOAD, Permission.REVIEW, Permission.REVIEW_TIER2, Permission.FEED,
           Permission.EVENTS, Permission.ADMIN]


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", COLUMNS)
def test_role_permission_matrix(role: Role, permission: Permission):
    expected = bool(EXPECTED[role][COLUMNS.index(permission)])
    assert allows(role, permission) is expected
    principal = Principal("someone", role)
    assert principal.allows(permission) is expected
    if expected:
        principal.require(permission)
    else:
        with pytest.raises(Forbidden) as info:
            principal.require(permission)
        assert info.value.status == 403


def test_matrix_covers_every_role_and_permission():
    assert set(ROLE_PERMISSIONS) == set(Role) == set(EXPECTED)
    assert set(COLUMNS) == set(Permission)


@pytest.fixture
def keys(db_engine) -> ApiKeyStore:
    return ApiKeyStore(make_session_factory(db_engine))


def test_keys_authenticate_to_their_principal_and_are_stored_hashed(keys: ApiKeyStore):
    key = keys.create("moderator", "alice")
    other = keys.create(Role.FEED, "feed-edge")
    assert key != other and key.startswith("rs_") and len(key) > 60
    assert keys.authenticate(key) == Principal("alice", Role.MODERATOR)
    assert keys.authenticate(other) == Principal("feed-edge", Role.FEED)
    secret = key.rsplit("_", 1)[1]
    with keys.sessions() as session:
        rows = session.scalars(select(ApiKeyRow)).all()
    stored = {r.name: r for r in rows}
    assert stored["alice"].secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    for row in rows:
        assert secret not in {row.key_id, row.secret_sha256, row.name}


@pytest.mark.parametrize("mangle", [
    lambda k: k[:-1] + ("0" if k[-1] != "0" else "1"),   # wrong secret
    lambda k: "rs_" + "0" * 16 + "_" + k.rsplit("_", 1)[1],  # unknown key id
    lambda k: k.replace("rs_", "xx_"),
    lambda k: k + "_extra",
    lambda k: "",
    lambda k: None,
])
def test_anything_but_the_exact_key_is_unauthorized(keys: ApiKeyStore, mangle):
    key = keys.create("admin", "root")
    with pytest.raises(Unauthorized) as info:
        keys.authenticate(mangle(key))
    assert info.value.status == 401


def test_revoked_keys_stop_working_and_names_are_unique(keys: ApiKeyStore):
    key = keys.create("uploader", "pipeline")
    with pytest.raises(Conflict):
        keys.create("admin", "pipeline")
    keys.revoke("pipeline")
    with pytest.raises(Unauthorized):
        keys.authenticate(key)
    with pytest.raises(NotFound):
        keys.revoke("nobody")
    with pytest.raises(InvalidInput, match="unknown role"):
        keys.create("superuser", "x")
    with pytest.raises(InvalidInput, match="name"):
        keys.create("admin", " ")
    assert [(k.name, k.revoked) for k in keys.list_keys()] == [("pipeline", True)]


def test_keys_cli_prints_the_key_once_and_lists_without_secrets(db_engine, keys):
    url = db_engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    created = runner.invoke(keys_app, ["create", "--role", "senior_moderator", "--name", "sam",
                                       "--database-url", url])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[0]
    assert keys.authenticate(key) == Principal("sam", Role.SENIOR_MODERATOR)
    listed = runner.invoke(keys_app, ["list", "--database-url", url])
    assert listed.exit_code == 0
    assert "sam\tsenior_moderator" in listed.stdout
    assert key.rsplit("_", 1)[1] not in listed.stdout
    bad = runner.invoke(keys_app, ["create", "--role", "god", "--name", "x",
                                   "--database-url", url])
    assert bad.exit_code != 0


def test_cached_keys_skip_the_database_and_revocation_clears_them(db_engine):
    store = ApiKeyStore(make_session_factory(db_engine), cache_seconds=60)
    key = store.create(Role.FEED, "feed-cache")
    assert store.cached(key) is None  # not verified yet
    assert store.authenticate(key).name == "feed-cache"
    assert store.cached(key) == store.authenticate(key)
    assert store.cached(key + "x") is None
    store.revoke("feed-cache")
    assert store.cached(key) is None
    with pytest.raises(Unauthorized):
        store.authenticate(key)
