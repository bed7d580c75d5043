"""The login cache `hitl login` writes, and the proof a command attaches (`proof_for`)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from activities.identity import LocalIssuer
from hitl_temporal.cli.application import Application
from hitl_temporal.cli.credentials import (
    CachedLogin,
    CredentialsError,
    NotLoggedIn,
    login_for,
    read_login,
    save_login,
    token_file,
)
from hitl_temporal.cli.proofs import person_of_login, proof_for

ISSUER = "https://id.example.com"
SECRET_LOOKING = "eyJhbGciOiJFZERTQSJ9.not-a-real-token.signature"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No HITL_* from the developer's shell; the login cache and the state directory in tmp_path."""
    for name in list(os.environ):
        if name.startswith("HITL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HITL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HITL_STATE_DIR", str(tmp_path / "state"))


def a_login(*, person: str = "fin_rev_ana", issuer: str = ISSUER, expires_in: timedelta = timedelta(hours=1)) -> CachedLogin:
    return CachedLogin(
        issuer=issuer,
        client_id="hitl-cli",
        access_token="opaque-access",
        id_token=SECRET_LOOKING,
        refresh_token=None,
        expires_at=datetime.now(UTC) + expires_in,
        person=person,
    )


class Failed(Exception):
    """What `app.fail` would have printed; raised instead of leaving the test process."""


@pytest.fixture
def app(monkeypatch) -> Application:
    """The command's state, as `hitl approve` would hand it to proof_for (settings read from the env on first use)."""
    app = Application()

    def fail(message: str, code: int = 2):
        raise Failed(message, code)

    monkeypatch.setattr(app, "fail", fail)
    return app


def test_saved_login_is_private_and_reads_back(tmp_path):
    login = a_login()
    path = save_login(login)

    assert path == tmp_path / "config" / "token.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_login() == login
    assert not [p for p in path.parent.iterdir() if p.name != "token.json"], "no temporary file may be left behind"


def test_cache_readable_by_others_is_refused_without_showing_the_token():
    path = save_login(a_login())
    path.chmod(0o644)

    with pytest.raises(CredentialsError) as refused:
        read_login()

    message = str(refused.value)
    assert "0644" in message and str(path) in message and "hitl login" in message
    assert SECRET_LOOKING not in message and "\n" not in message


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"issuer": "https://id.example.com"}', "access_token"),
        (b"[]", "not a login"),
        (b"", "empty"),
    ],
)
def test_malformed_cache_is_refused_with_what_is_wrong(content, named):
    path = token_file()
    path.parent.mkdir(mode=0o700, parents=True)
    path.touch(mode=0o600)
    path.write_bytes(content)

    with pytest.raises(CredentialsError, match=named) as refused:
        read_login()

    assert str(path) in str(refused.value) and "\n" not in str(refused.value)


def test_login_for_another_issuer_is_not_used_and_says_both_issuers():
    save_login(a_login(issuer="https://old-idp.example.com"))

    with pytest.raises(NotLoggedIn) as refused:
        login_for(ISSUER)

    assert "https://old-idp.example.com" in str(refused.value) and ISSUER in str(refused.value)
    assert "hitl login" in str(refused.value)


def test_expired_login_is_not_used():
    save_login(a_login(expires_in=timedelta(seconds=5)))  # inside the margin: gone before the workflow checks it

    with pytest.raises(NotLoggedIn, match="expired at .*run `hitl login`"):
        login_for(ISSUER)


def test_proof_with_the_local_issuer_is_a_fresh_token_for_the_person(app, tmp_path):
    app = app

    token = proof_for(app, "fin_rev_ana")

    assert token is not None
    public_key = jwt.PyJWK(LocalIssuer(tmp_path / "state").public_jwk()).key
    claims = jwt.decode(token, public_key, algorithms=["EdDSA"], audience="hitl")
    assert claims["sub"] == "fin_rev_ana" and claims["iss"] == "hitl-local"
    assert claims["exp"] - claims["iat"] == 600


def test_proof_in_asserted_mode_is_none(app, monkeypatch):
    monkeypatch.setenv("HITL_IDENTITY", "asserted")

    assert proof_for(app, "fin_rev_ana") is None


def test_proof_from_the_login_must_be_the_named_persons(app, monkeypatch):
    monkeypatch.setenv("HITL_OIDC_ISSUER", ISSUER)
    monkeypatch.setenv("HITL_OIDC_CLIENT_ID", "hitl-cli")
    save_login(a_login(person="fin_rev_ben"))

    assert proof_for(app, "fin_rev_ben") == SECRET_LOOKING
    assert proof_for(app, None) == SECRET_LOOKING
    assert person_of_login(app) == "fin_rev_ben"
    with pytest.raises(Failed) as refused:
        proof_for(app, "vp_ops_raj")
    message, code = refused.value.args
    assert "logged in as fin_rev_ben, not vp_ops_raj" in message and code == 2
    assert SECRET_LOOKING not in message


def test_proof_without_a_login_says_to_log_in(app, monkeypatch):
    monkeypatch.setenv("HITL_OIDC_ISSUER", ISSUER)
    monkeypatch.setenv("HITL_OIDC_CLIENT_ID", "hitl-cli")

    assert person_of_login(app) is None
    with pytest.raises(Failed, match=r"run `hitl login`"):
        proof_for(app, "fin_rev_ana")


def test_proof_on_the_local_issuer_without_a_person_asks_for_as(app):
    with pytest.raises(Failed, match="give --as PERSON"):
        proof_for(app, None)
