"""`resolve_trust` against a real HTTP server playing an OIDC issuer (discovery document and key set),
and the local issuer's key file created by processes racing each other."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from jwt.algorithms import ECAlgorithm
from pytest_httpserver import HTTPServer
from temporalio.exceptions import ApplicationError
from werkzeug import Request, Response

from activities.identity import LOCAL_ISSUER, IdentityActivities, LocalIssuer
from gates.identity import ProofRefused, TrustRequest, TrustSnapshot, verify_proof
from tests.helpers import clean_env, local_http_server, run_hitl
from workers.config import Settings

DISCOVERY = "/realms/hitl/.well-known/openid-configuration"
JWKS = "/realms/hitl/keys"


class SigningKey:
    """An issuer's EC key as an IdP publishes it: a JWK with the private members left in by mistake."""

    def __init__(self, kid: str):
        self.kid = kid
        self.key = generate_private_key(SECP256R1())

    def published_jwk(self) -> dict[str, Any]:
        return {**ECAlgorithm.to_jwk(self.key, as_dict=True), "kid": self.kid, "use": "sig", "alg": "ES256"}

    def sign(self, issuer: str, person: str) -> str:
        now = int(time.time())
        claims = {"iss": issuer, "aud": "hitl-app", "sub": person, "iat": now, "exp": now + 600}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})


class FakeIssuer:
    """Discovery and JWKS served from `server`; `keys` can change between requests (rotation)."""

    def __init__(self, server: HTTPServer, *keys: SigningKey):
        self.server = server
        self.issuer = server.url_for("/realms/hitl")
        self.keys = list(keys)
        self.jwks_requests = 0
        server.expect_request(DISCOVERY).respond_with_json({"issuer": self.issuer, "jwks_uri": server.url_for(JWKS)})
        server.expect_request(JWKS).respond_with_handler(self._jwks)

    def _jwks(self, _request: Request) -> Response:
        self.jwks_requests += 1
        return Response(json.dumps({"keys": [key.published_jwk() for key in self.keys]}), content_type="application/json")

    def settings(self, **changes: Any) -> Settings:
        return Settings(_env_file=None, identity="verified", oidc_issuer=self.issuer, oidc_client_id="hitl-app", **changes)


@pytest.fixture
def server():
    with local_http_server() as server:
        yield server


async def test_issuer_keys_reach_the_workflow_without_private_members(server: HTTPServer, tmp_path: Path):
    key = SigningKey("2026-12")
    issuer = FakeIssuer(server, key)

    trust = await IdentityActivities(issuer.settings(state_dir=tmp_path)).resolve_trust(TrustRequest())

    assert trust.mode == "verified"
    (oidc,) = trust.issuers  # the local issuer is off when an OIDC issuer is configured (HITL_LOCAL_ISSUER=auto)
    assert (oidc.issuer, oidc.audience, oidc.source, oidc.how_to_get) == (issuer.issuer, "hitl-app", "oidc", "`hitl login`")
    (jwk,) = oidc.jwks["keys"]
    assert "d" in key.published_jwk()
    assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & jwk.keys()
    assert jwk["kid"] == "2026-12"
    proof = verify_proof(key.sign(issuer.issuer, "fin_rev_ana"), trust, person="fin_rev_ana", now=datetime.now(UTC))
    assert proof.person == "fin_rev_ana"


async def test_an_unknown_key_id_fetches_the_keys_again_and_finds_the_rotated_key(server: HTTPServer, tmp_path: Path):
    old, new = SigningKey("old"), SigningKey("new")
    issuer = FakeIssuer(server, old)
    activities = IdentityActivities(issuer.settings(state_dir=tmp_path))
    await activities.resolve_trust(TrustRequest())
    issuer.keys = [old, new]  # the issuer rotates

    cached = await activities.resolve_trust(TrustRequest())
    assert cached.key_ids() == {"old"} and issuer.jwks_requests == 1  # within five minutes: from the cache
    token = new.sign(issuer.issuer, "vp_ops_raj")
    refused = pytest.raises(ProofRefused, verify_proof, token, cached, person="vp_ops_raj", now=datetime.now(UTC))
    assert refused.value.unknown_key_id == "new"

    fresh = await activities.resolve_trust(TrustRequest(unknown_key_id="new"))

    assert issuer.jwks_requests == 2
    assert fresh.key_ids() == {"old", "new"}
    assert verify_proof(token, fresh, person="vp_ops_raj", now=datetime.now(UTC)).key_id == "new"


async def test_refresh_fetches_the_keys_even_when_cached(server: HTTPServer, tmp_path: Path):
    issuer = FakeIssuer(server, SigningKey("a"))
    activities = IdentityActivities(issuer.settings(state_dir=tmp_path))
    await activities.resolve_trust(TrustRequest())

    await activities.resolve_trust(TrustRequest(refresh=True))

    assert issuer.jwks_requests == 2


def _serve_discovery(server: HTTPServer, body: str | dict[str, Any], status: int = 200) -> Settings:
    issuer = server.url_for("/realms/hitl")
    text = body if isinstance(body, str) else json.dumps(body)
    server.expect_request(DISCOVERY).respond_with_data(text, status=status, content_type="application/json")
    return Settings(_env_file=None, identity="verified", oidc_issuer=issuer, oidc_audience="hitl-app")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"issuer": "x", ', "is not valid JSON"),
        ("[]", "is not an OpenID configuration (not a JSON object)"),
        ({"issuer": "ISSUER"}, "has no jwks_uri (where the issuer's keys are)"),
        ({"issuer": "https://elsewhere.example.com", "jwks_uri": "https://elsewhere.example.com/keys"}, "says its issuer is"),
        ({"issuer": "ISSUER", "jwks_uri": "http://keys.example.com/jwks"}, "is not https"),
        ({"issuer": "ISSUER", "jwks_uri": "ftp://keys.example.com/jwks"}, "is not an http(s) URL"),
    ],
)
async def test_a_malformed_discovery_document_is_a_clear_error_naming_the_url(
    server: HTTPServer, tmp_path: Path, body: str | dict[str, Any], expected: str
):
    if isinstance(body, dict):
        body = {name: value.replace("ISSUER", server.url_for("/realms/hitl")) for name, value in body.items()}
    settings = _serve_discovery(server, body).model_copy(update={"state_dir": tmp_path})

    with pytest.raises(ApplicationError) as failed:
        await IdentityActivities(settings).resolve_trust(TrustRequest())

    assert failed.value.non_retryable and failed.value.type == "IssuerMisconfigured"
    assert expected in str(failed.value)
    assert DISCOVERY in str(failed.value) and "\n" not in str(failed.value)


async def test_a_key_set_that_is_not_one_is_a_clear_error(server: HTTPServer, tmp_path: Path):
    issuer = server.url_for("/realms/hitl")
    server.expect_request(DISCOVERY).respond_with_json({"issuer": issuer, "jwks_uri": server.url_for(JWKS)})
    server.expect_request(JWKS).respond_with_json({"kid": "a", "kty": "EC"})
    settings = Settings(_env_file=None, identity="verified", oidc_issuer=issuer, oidc_audience="hitl-app", state_dir=tmp_path)

    with pytest.raises(ApplicationError, match=f'{server.url_for(JWKS)} is not a JSON Web Key Set \\(no "keys" list\\)'):
        await IdentityActivities(settings).resolve_trust(TrustRequest())


async def test_an_oversized_answer_is_refused_without_reading_it_all(server: HTTPServer, tmp_path: Path):
    settings = _serve_discovery(server, '{"pad": "' + "x" * 300_000 + '"}').model_copy(update={"state_dir": tmp_path})

    with pytest.raises(ApplicationError, match="answered with more than 256 KiB"):
        await IdentityActivities(settings).resolve_trust(TrustRequest())


async def test_an_issuer_that_is_down_is_retried(server: HTTPServer, tmp_path: Path):
    settings = _serve_discovery(server, "busy", status=503).model_copy(update={"state_dir": tmp_path})

    with pytest.raises(ApplicationError) as failed:
        await IdentityActivities(settings).resolve_trust(TrustRequest())

    assert not failed.value.non_retryable and failed.value.type == "IssuerUnavailable"
    assert "answered 503" in str(failed.value)


async def test_an_issuer_that_cannot_be_reached_is_retried(tmp_path: Path):
    with local_http_server() as gone:
        issuer = gone.url_for("/realms/hitl")
    settings = Settings(_env_file=None, identity="verified", oidc_issuer=issuer, oidc_audience="hitl-app", state_dir=tmp_path)

    with pytest.raises(ApplicationError) as failed:
        await IdentityActivities(settings).resolve_trust(TrustRequest())

    assert not failed.value.non_retryable and failed.value.type == "IssuerUnavailable"
    assert f"cannot reach {issuer}/.well-known/openid-configuration" in str(failed.value)


async def test_asserted_mode_trusts_no_issuer(tmp_path: Path):
    settings = Settings(_env_file=None, identity="asserted", state_dir=tmp_path)

    assert await IdentityActivities(settings).resolve_trust(TrustRequest()) == TrustSnapshot(mode="asserted")
    assert not (tmp_path / "identity").exists()


async def test_without_an_oidc_issuer_the_local_issuer_is_trusted(tmp_path: Path):
    settings = Settings(_env_file=None, identity="verified", state_dir=tmp_path)
    trust = await IdentityActivities(settings).resolve_trust(TrustRequest())

    (local,) = trust.issuers
    assert (local.issuer, local.source, local.jwks) == (LOCAL_ISSUER, "local", LocalIssuer(tmp_path).jwks())
    token = LocalIssuer(tmp_path).mint("fin_rev_ana")
    assert verify_proof(token, trust, person="fin_rev_ana", now=datetime.now(UTC)).issuer == LOCAL_ISSUER


async def test_both_issuers_when_the_local_one_is_switched_on(server: HTTPServer, tmp_path: Path):
    issuer = FakeIssuer(server, SigningKey("a"))

    trust = await IdentityActivities(issuer.settings(state_dir=tmp_path, local_issuer="on")).resolve_trust(TrustRequest())

    assert [known.source for known in trust.issuers] == ["local", "oidc"]


async def test_a_broken_local_key_file_fails_the_activity_for_good(tmp_path: Path):
    (tmp_path / "identity").mkdir()
    (tmp_path / "identity" / "local-issuer.pem").write_text("garbage")

    with pytest.raises(ApplicationError) as failed:
        await IdentityActivities(Settings(_env_file=None, identity="verified", state_dir=tmp_path)).resolve_trust(TrustRequest())

    assert failed.value.non_retryable and "local-issuer.pem is not a readable PEM private key" in str(failed.value)


def test_processes_creating_the_local_key_at_once_end_with_one_key(tmp_path: Path):
    """Six processes, ready (imports done) and released at once, each ask for the key: all get the same one."""
    state_dir, barrier = tmp_path / "state", tmp_path / "barrier"
    barrier.mkdir()
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from activities.identity import LocalIssuer
        barrier = Path({str(barrier)!r})
        (barrier / f"ready-{{sys.argv[1]}}").touch()
        while not (barrier / "go").exists():
            time.sleep(0.001)
        print(LocalIssuer(Path({str(state_dir)!r})).kid)
        """
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(6)
    ]
    deadline = time.monotonic() + 60
    while len(list(barrier.glob("ready-*"))) < len(processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    (barrier / "go").touch()
    outputs = [process.communicate(timeout=60) for process in processes]

    assert all(process.returncode == 0 for process in processes), [err for _, err in outputs]
    kids = {out.strip() for out, _ in outputs}
    assert kids == {LocalIssuer(state_dir).kid}
    assert [path.name for path in (state_dir / "identity").iterdir()] == ["local-issuer.pem"]  # no temporary files left


def test_a_local_proof_minted_by_one_process_verifies_with_the_keys_another_read(tmp_path: Path):
    token = LocalIssuer(tmp_path).mint("fin_rev_ana", ttl=timedelta(minutes=5), audience="hitl")
    keys = LocalIssuer(tmp_path).issuer_keys(fetched_at=datetime.now(UTC))

    proof = verify_proof(token, TrustSnapshot(mode="verified", issuers=[keys]), person="fin_rev_ana", now=datetime.now(UTC))

    assert proof.token_id is not None and len(proof.token_id) == len(uuid.uuid4().hex)


async def test_hitl_token_prints_only_a_proof_that_verifies_for_that_person(tmp_path: Path):
    done = await run_hitl(clean_env(), "token", "--as", "fin_rev_ana", "--ttl", "10m", "--state-dir", str(tmp_path))

    assert done.returncode == 0, done.stderr
    keys = LocalIssuer(tmp_path).issuer_keys(fetched_at=datetime.now(UTC))
    proof = verify_proof(
        done.stdout.strip(), TrustSnapshot(mode="verified", issuers=[keys]), person="fin_rev_ana", now=datetime.now(UTC)
    )
    assert timedelta(minutes=9) < proof.expires_at - datetime.now(UTC) <= timedelta(minutes=10)
    assert "for a laptop, not production" in done.stderr


async def test_hitl_token_sends_people_to_hitl_login_when_an_oidc_issuer_is_configured(tmp_path: Path):
    env = clean_env(HITL_OIDC_ISSUER="https://id.example.com", HITL_OIDC_CLIENT_ID="hitl-app")

    done = await run_hitl(env, "token", "--as", "fin_rev_ana", "--state-dir", str(tmp_path))

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "hitl: proofs come from the OIDC issuer https://id.example.com: use `hitl login` (--as is for the local issuer)\n"
    )
    assert not (tmp_path / "identity").exists()
    # without --as and without a login: it says how to get one
    anonymous = await run_hitl(env | {"HITL_CONFIG_DIR": str(tmp_path / "config")}, "token", "--state-dir", str(tmp_path))
    assert anonymous.returncode == 2 and "hitl login" in anonymous.stderr and anonymous.stdout == ""


async def test_hitl_token_refuses_a_person_id_that_is_not_one(tmp_path: Path):
    done = await run_hitl(clean_env(), "token", "--as", "Fin Rev", "--state-dir", str(tmp_path))

    assert done.returncode == 2 and done.stdout == ""
    assert "'Fin Rev' is not a person id" in done.stderr
