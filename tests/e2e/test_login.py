"""`hitl login` against a real local OpenID provider speaking the device flow (RFC 8628), then `whoami` and `logout`."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from hitl_temporal.cli.credentials import DEVICE_CODE_GRANT, DeviceAuthorization, DeviceFlow, LoginRefused
from tests.helpers import HITL, clean_env, local_http_server

CLIENT_ID = "hitl-cli"
USER_CODE = "WDJB-MJHT"
DEVICE_CODE = "device-code-1234"
PENDING = (400, {"error": "authorization_pending"})
SLOW_DOWN = (400, {"error": "slow_down"})


@dataclass
class Provider:
    """A local identity provider: discovery, device authorization, and a token endpoint that plays `answers` in turn."""

    server: HTTPServer
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    answers: list[tuple[int, Any]] = field(default_factory=list)
    polls: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    device_answer: dict[str, Any] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def id_token(self, person: str = "fin_rev_ana") -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT_ID, "sub": person, "iat": now, "exp": now + 3600}
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": "test-key"})

    def serve(self) -> None:
        self.server.expect_request("/.well-known/openid-configuration", method="GET").respond_with_json(
            {
                "issuer": self.issuer,
                "device_authorization_endpoint": self.server.url_for("/device/code"),
                "token_endpoint": self.server.url_for("/token"),
                "jwks_uri": self.server.url_for("/jwks"),
            }
        )
        self.server.expect_request("/device/code", method="POST").respond_with_handler(self._device)
        self.server.expect_request("/token", method="POST").respond_with_handler(self._token)

    def _device(self, request: Request) -> Response:
        assert request.form["client_id"] == CLIENT_ID and request.form["scope"] == "openid profile email"
        answer = {
            "device_code": DEVICE_CODE,
            "user_code": USER_CODE,
            "verification_uri": self.server.url_for("/activate"),
            "verification_uri_complete": self.server.url_for(f"/activate?user_code={USER_CODE}"),
            "expires_in": 600,
            "interval": 0,
        }
        return Response(json.dumps(answer | self.device_answer), content_type="application/json")

    def _token(self, request: Request) -> Response:
        self.polls.append((time.monotonic(), dict(request.form)))
        status, body = self.answers.pop(0) if self.answers else PENDING
        text = body if isinstance(body, str) else json.dumps(body)
        return Response(text, status=status, content_type="application/json")


@pytest.fixture
def provider() -> Iterator[Provider]:
    with local_http_server() as server:
        provider = Provider(server)
        provider.serve()
        yield provider


@pytest.fixture
def config_dir(tmp_path) -> Path:
    return tmp_path / "config"


def hitl(provider: Provider | None, config_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    oidc = {"HITL_OIDC_ISSUER": provider.issuer, "HITL_OIDC_CLIENT_ID": CLIENT_ID} if provider else {}
    env = clean_env(HITL_CONFIG_DIR=str(config_dir), HITL_STATE_DIR=str(config_dir.parent / "state"), **oidc)
    return subprocess.run([HITL, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_login_shows_the_code_waits_for_approval_and_caches_a_private_proof(provider, config_dir):
    id_token = provider.id_token("fin_rev_ana")
    tokens = {"access_token": "at-1", "token_type": "Bearer", "id_token": id_token}
    provider.answers = [PENDING, PENDING, SLOW_DOWN, (200, tokens)]

    result = hitl(provider, config_dir, "login")

    assert result.returncode == 0, result.stderr
    assert USER_CODE in result.stdout and provider.server.url_for("/activate") in result.stdout
    assert provider.server.url_for(f"/activate?user_code={USER_CODE}") in result.stdout
    assert "logged in as fin_rev_ana" in result.stdout
    assert id_token not in result.stdout + result.stderr and "at-1" not in result.stdout + result.stderr
    assert [form for _, form in provider.polls] == [
        {"grant_type": DEVICE_CODE_GRANT, "device_code": DEVICE_CODE, "client_id": CLIENT_ID}
    ] * 4
    assert provider.polls[3][0] - provider.polls[2][0] >= 5, "slow_down adds 5 s to the poll interval"
    cache = config_dir / "token.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600 and stat.S_IMODE(config_dir.stat().st_mode) == 0o700
    cached = json.loads(cache.read_text())
    assert cached["id_token"] == id_token and cached["person"] == "fin_rev_ana" and cached["issuer"] == provider.issuer

    whoami = hitl(provider, config_dir, "whoami")
    assert whoami.returncode == 0, whoami.stderr
    assert "fin_rev_ana" in whoami.stdout and provider.issuer in whoami.stdout and "until 20" in whoami.stdout
    assert id_token not in whoami.stdout
    proof = hitl(provider, config_dir, "token")  # what a reviewer pastes into the Web UI's Send an Update
    assert proof.returncode == 0 and proof.stdout.strip() == id_token, proof.stderr
    assert "fin_rev_ana" in proof.stderr
    assert hitl(provider, config_dir, "token", "--as", "vp_ops_raj").returncode == 2

    logout = hitl(provider, config_dir, "logout")
    assert logout.returncode == 0 and not cache.exists()
    after = hitl(provider, config_dir, "whoami")
    assert after.returncode == 1 and "not logged in" in after.stderr
    again = hitl(provider, config_dir, "logout")
    assert again.returncode == 0 and "nothing to remove" in again.stdout


@pytest.mark.parametrize(
    ("answer", "code", "message"),
    [
        ((400, {"error": "access_denied"}), 1, "the login was denied"),
        ((400, {"error": "expired_token"}), 1, f"the code {USER_CODE} expired before it was approved"),
        ((200, "{not json"), 2, "/token answered HTTP 200 with something that is not JSON"),
        ((503, "<html>down</html>"), 2, "/token answered HTTP 503"),
        ((400, {"error": "invalid_client", "error_description": "no client"}), 2, "refused: invalid_client (no client)"),
        ((200, {"access_token": "opaque", "token_type": "Bearer"}), 2, "access token is not a JWT"),
    ],
    ids=["access_denied", "expired_token", "malformed_json", "http_503", "other_error", "opaque_token"],
)
def test_login_that_fails_says_why_in_one_line_and_saves_nothing(provider, config_dir, answer, code, message):
    provider.answers = [PENDING, answer]

    result = hitl(provider, config_dir, "login")

    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("hitl: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, "one line, no traceback"
    assert not (config_dir / "token.json").exists()


def test_login_gives_up_when_the_code_expires_unapproved(provider, config_dir):
    provider.device_answer = {"expires_in": 1, "interval": 0.2}

    result = hitl(provider, config_dir, "login")

    assert result.returncode == 1
    assert "expired before it was approved" in result.stderr and "run `hitl login` again" in result.stderr
    assert len(provider.polls) >= 2 and not (config_dir / "token.json").exists()


def test_login_without_a_provider_names_the_settings_and_the_local_way(config_dir):
    result = hitl(None, config_dir, "login")

    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "HITL_OIDC_ISSUER and HITL_OIDC_CLIENT_ID" in line
    assert "--as PERSON" in line and "hitl token --as PERSON" in line


def test_login_against_a_provider_without_the_device_flow_says_so(config_dir):
    with local_http_server() as server:
        issuer = server.url_for("/").rstrip("/")
        server.expect_request("/.well-known/openid-configuration").respond_with_json(
            {"issuer": issuer, "token_endpoint": server.url_for("/token")}
        )
        env = clean_env(HITL_CONFIG_DIR=str(config_dir), HITL_OIDC_ISSUER=issuer, HITL_OIDC_CLIENT_ID=CLIENT_ID)
        result = subprocess.run([HITL, "login"], env=env, capture_output=True, text=True, timeout=60, check=False)

    assert result.returncode == 2
    assert "no device_authorization_endpoint" in result.stderr and "/.well-known/openid-configuration" in result.stderr


def test_whoami_on_the_local_issuer_says_as_picks_the_person(config_dir):
    result = hitl(None, config_dir, "whoami")

    assert result.returncode == 1 and "not logged in" in result.stderr
    assert "--as PERSON picks who you are" in result.stdout


def test_whoami_refuses_a_cache_others_can_read(provider, config_dir):
    config_dir.mkdir(mode=0o700)
    cache = config_dir / "token.json"
    cache.write_text(json.dumps({"issuer": provider.issuer, "client_id": CLIENT_ID, "access_token": "secret-at",
                                 "expires_at": "2099-01-01T00:00:00Z", "person": "fin_rev_ana"}))
    cache.chmod(0o644)

    result = hitl(provider, config_dir, "whoami")

    assert result.returncode == 2
    assert "mode 0644" in result.stderr and "secret-at" not in result.stderr + result.stdout


def test_slow_down_widens_the_interval_for_every_later_poll(provider):
    """The same flow in process with the sleeps recorded: RFC 8628 §3.5 says the increase is permanent."""
    provider.answers = [PENDING, SLOW_DOWN, PENDING, SLOW_DOWN, (200, {"access_token": "at", "id_token": provider.id_token()})]
    sleeps: list[float] = []
    shown: list[DeviceAuthorization] = []

    login = DeviceFlow(provider.issuer, CLIENT_ID, sleep=sleeps.append).login(shown.append)

    assert sleeps == [0, 0, 5, 5, 10]
    assert login.person == "fin_rev_ana" and shown[0].user_code == USER_CODE


def test_denied_login_in_process_raises_login_refused(provider):
    provider.answers = [(400, {"error": "access_denied"})]

    with pytest.raises(LoginRefused, match="denied"):
        DeviceFlow(provider.issuer, CLIENT_ID, sleep=lambda _: None).login(lambda _: None)
