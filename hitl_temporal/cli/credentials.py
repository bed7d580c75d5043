"""What `hitl login` leaves behind and how it gets it: the token cache and the device flow client.

The cache is one JSON file, `token.json` in the CLI's config directory (`click.get_app_dir("hitl")`,
or `HITL_CONFIG_DIR`). It holds bearer tokens, so it is created 0600 in a 0700 directory, replaced
atomically, and refused when anyone but its owner may read it. Tokens are never printed.

The login is the OAuth 2.0 device authorization grant (RFC 8628), which needs no browser on the
machine that runs `hitl`: discovery, a device code, then polling the token endpoint while the
person approves on another device. Every failure is one `CredentialsError` line naming the
endpoint; `LoginRefused` when the person (or the clock) said no.

Exception hierarchy:

    CredentialsError (ValueError)   an unsafe or broken cache, a bad or unreachable provider (exit 2)
     ├── NotLoggedIn                 no usable login for the configured issuer (absent, expired, another issuer's)
     └── LoginRefused                access denied, or the code expired before approval (`hitl login` exits 1)
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import httpx
import jwt
from pydantic import BaseModel, ConfigDict, ValidationError

from gates.json_input import JsonInputError, loads_strict
from gates.text import neutralize

CONFIG_DIR_ENV = "HITL_CONFIG_DIR"
TOKEN_FILE_NAME = "token.json"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPE = "openid profile email"
# RFC 8628 §3.2 and §3.5: the default poll interval, and what `slow_down` adds to it.
DEFAULT_INTERVAL_SECONDS = 5.0
SLOW_DOWN_SECONDS = 5.0
# A discovery document or a token answer is a few KiB; a cache file holds three tokens.
MAX_ANSWER_BYTES = 256 * 1024
MAX_CACHE_BYTES = 64 * 1024
HTTP_TIMEOUT_SECONDS = 10.0
# A login that expires within this margin is treated as expired: the proof must still be valid
# when the workflow checks it, after the update's round trip.
EXPIRY_MARGIN = timedelta(seconds=30)


class CredentialsError(ValueError):
    """A login that cannot be used or obtained; the message is one line and never holds a token."""


class NotLoggedIn(CredentialsError):
    """No cached login fit for the configured issuer (absent, expired or another issuer's)."""


class LoginRefused(CredentialsError):
    """The provider said no: the person denied the request, or the code expired before approval."""


def _shown(text: object, limit: int = 200) -> str:
    """Text from a provider or a file, safe on one terminal line."""
    return neutralize(str(text), keep_newlines=False)[:limit]


# --- the cache -------------------------------------------------------------------------------


def config_dir() -> Path:
    """Where the CLI keeps its login: `HITL_CONFIG_DIR`, else the platform's config dir for `hitl`."""
    override = os.environ.get(CONFIG_DIR_ENV)
    return Path(override) if override else Path(click.get_app_dir("hitl"))


def token_file() -> Path:
    return config_dir() / TOKEN_FILE_NAME


class CachedLogin(BaseModel):
    """One login as `token.json` holds it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    issuer: str
    client_id: str
    access_token: str
    id_token: str | None = None
    refresh_token: str | None = None
    expires_at: datetime
    person: str

    @property
    def proof(self) -> str:
        """What a decision carries: the id_token when the provider gave one, else the access token."""
        return self.id_token or self.access_token

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at - EXPIRY_MARGIN <= (now or datetime.now(UTC))


def save_login(login: CachedLogin, path: Path | None = None) -> Path:
    """Write the cache atomically: a new 0600 file in the (0700) directory, renamed over the old one,
    so a reader sees the old login or the new one and nobody else ever sees either."""
    path = path or token_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(login.model_dump_json(indent=2) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise CredentialsError(f"cannot write {_shown(path)}: {err.strerror or type(err).__name__}") from None
    return path


def read_login(path: Path | None = None) -> CachedLogin | None:
    """The cached login, or None when there is none; CredentialsError for a file that others may
    read (its tokens may have leaked), one that is not ours, or one that is not a login."""
    path = path or token_file()
    shown = _shown(path)
    again = f"run `hitl logout` and `hitl login` again (the file is {CONFIG_DIR_ENV} or the default config directory)"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CredentialsError(f"cannot read the login cache {shown}: {err.strerror or type(err).__name__}") from None
    with os.fdopen(fd, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise CredentialsError(f"the login cache {shown} is not a regular file; {again}")
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o077:
            raise CredentialsError(
                f"the login cache {shown} has mode {mode:04o}: others may read its tokens, so it is not used; "
                f"treat them as leaked, {again}"
            )
        if status.st_uid != os.getuid():
            raise CredentialsError(f"the login cache {shown} belongs to another user (uid {status.st_uid}); {again}")
        data = file.read(MAX_CACHE_BYTES + 1)
    if len(data) > MAX_CACHE_BYTES:
        raise CredentialsError(f"the login cache {shown} is larger than {MAX_CACHE_BYTES // 1024} KiB; {again}")
    try:
        return CachedLogin.model_validate(loads_strict(data, what=f"the login cache {shown}"))
    except JsonInputError as err:
        raise CredentialsError(f"{err}; {again}") from None
    except ValidationError as err:
        fields = ", ".join(sorted({".".join(map(str, e["loc"])) or "(top level)" for e in err.errors()}))
        raise CredentialsError(f"the login cache {shown} is not a login (bad or missing: {fields}); {again}") from None


def remove_login(path: Path | None = None) -> bool:
    """Delete the cache; False when there was none (logging out twice is fine)."""
    path = path or token_file()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as err:
        raise CredentialsError(f"cannot remove {_shown(path)}: {err.strerror or type(err).__name__}") from None
    return True


def same_issuer(a: str, b: str) -> bool:
    """Issuer identifiers compare as strings (OIDC Discovery §4.3), give or take a trailing slash."""
    return a.rstrip("/") == b.rstrip("/")


def login_for(issuer: str | None, path: Path | None = None, *, now: datetime | None = None) -> CachedLogin:
    """The cached login for `issuer`, fit to use now, or NotLoggedIn saying what to do."""
    login = read_login(path)
    if login is None:
        raise NotLoggedIn("not logged in: run `hitl login`")
    if issuer is None or not same_issuer(login.issuer, issuer):
        configured = f"HITL_OIDC_ISSUER ({_shown(issuer)})" if issuer else "no HITL_OIDC_ISSUER"
        raise NotLoggedIn(
            f"the cached login ({_shown(login.person, 80)}) is for issuer {_shown(login.issuer)}, but this configuration has "
            f"{configured}: run `hitl login`"
        )
    if login.expired(now):
        raise NotLoggedIn(f"the login of {_shown(login.person, 80)} expired at {_when(login.expires_at)}: run `hitl login`")
    return login


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_login(login: CachedLogin) -> str:
    """`fin_rev_ana (issuer https://id.example.com, until 2026-12-02T10:00:00Z)`: no token in it."""
    return f"{_shown(login.person, 80)} (issuer {_shown(login.issuer)}, until {_when(login.expires_at)})"


# --- the device flow ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """What discovery says about the provider."""

    device_authorization: str
    token: str


@dataclass(frozen=True)
class DeviceAuthorization:
    """The device authorization response (RFC 8628 §3.2): what the person is shown, what we poll with."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _endpoint_problem(url: str) -> str | None:
    """Why `url` cannot be called with a device code or tokens, or None: https, or http on this machine."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        return "is not a valid URL"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return None
    return "is not an https URL (plain http only for localhost)"


class DeviceFlow:
    """`hitl login` against one OpenID provider: discover, authorize the device, poll for tokens.

    `sleep` and `clock` are injectable so tests run without waiting; the poll interval is the
    server's own (`interval`, default 5 s), so a test server answering `interval: 0` is fast too."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        *,
        person_claim: str = "sub",
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.person_claim = person_claim
        self._client = client or httpx.Client(timeout=HTTP_TIMEOUT_SECONDS)
        self._sleep = sleep
        self._clock = clock

    def login(self, show: Callable[[DeviceAuthorization], None]) -> CachedLogin:
        """The whole flow; `show` tells the person where to go and which code to enter."""
        endpoints = self.discover()
        authorization = self.authorize(endpoints)
        show(authorization)
        return self.cached_login(self.wait_for_tokens(endpoints, authorization))

    def discover(self) -> Endpoints:
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        status, document = self._exchange("GET", url, "the discovery document")
        if status != 200:
            raise CredentialsError(f"the discovery document {_shown(url)} answered HTTP {status}")
        found = document.get("issuer")
        if not isinstance(found, str) or not same_issuer(found, self.issuer):
            raise CredentialsError(
                f"the discovery document {_shown(url)} names issuer {_shown(found)!r}, "
                f"not HITL_OIDC_ISSUER {_shown(self.issuer)!r}"
            )
        device = self._endpoint(document, "device_authorization_endpoint", url)
        if device is None:
            raise CredentialsError(
                f"the discovery document {_shown(url)} has no device_authorization_endpoint: "
                "the provider does not offer the device flow (RFC 8628) that `hitl login` uses"
            )
        token = self._endpoint(document, "token_endpoint", url)
        if token is None:
            raise CredentialsError(f"the discovery document {_shown(url)} has no token_endpoint")
        return Endpoints(device_authorization=device, token=token)

    def authorize(self, endpoints: Endpoints) -> DeviceAuthorization:
        url = endpoints.device_authorization
        status, answer = self._exchange(
            "POST", url, "the device authorization endpoint", data={"client_id": self.client_id, "scope": SCOPE}
        )
        if status != 200:
            raise CredentialsError(f"the device authorization endpoint {_shown(url)} refused: {_oauth_error(answer, status)}")
        try:
            return DeviceAuthorization(
                device_code=_string(answer, "device_code"),
                user_code=_string(answer, "user_code"),
                # `verification_url`: the name some providers (Google) used before the RFC settled
                verification_uri=_string(answer, "verification_uri" if "verification_uri" in answer else "verification_url"),
                verification_uri_complete=_optional_string(answer, "verification_uri_complete"),
                expires_in=_seconds(answer, "expires_in", None),
                interval=_seconds(answer, "interval", DEFAULT_INTERVAL_SECONDS),
            )
        except ValueError as err:
            raise CredentialsError(f"the device authorization endpoint {_shown(url)} answered without a valid {err}") from None

    def wait_for_tokens(self, endpoints: Endpoints, authorization: DeviceAuthorization) -> dict[str, Any]:
        """Poll the token endpoint every `interval` until the person approves, denies, or the code expires."""
        url = endpoints.token
        interval = authorization.interval
        deadline = self._clock() + authorization.expires_in
        form = {"grant_type": DEVICE_CODE_GRANT, "device_code": authorization.device_code, "client_id": self.client_id}
        expired = LoginRefused(
            f"the code {_shown(authorization.user_code, 40)} expired before it was approved; run `hitl login` again"
        )
        while True:
            self._sleep(interval)
            if self._clock() >= deadline:
                raise expired
            status, answer = self._exchange("POST", url, "the token endpoint", data=form)
            if status == 200:
                return answer
            error = answer.get("error")
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += SLOW_DOWN_SECONDS
                continue
            if error == "access_denied":
                raise LoginRefused("the login was denied at the provider; nothing was saved")
            if error == "expired_token":
                raise expired
            raise CredentialsError(f"the token endpoint {_shown(url)} refused: {_oauth_error(answer, status)}")

    def cached_login(self, tokens: dict[str, Any]) -> CachedLogin:
        """The cache entry for a token response: the proof, whose it is and until when."""
        try:
            access_token = _string(tokens, "access_token")
            id_token = _optional_string(tokens, "id_token")
            refresh_token = _optional_string(tokens, "refresh_token")
        except ValueError as err:
            raise CredentialsError(f"the token endpoint answered without a valid {err}") from None
        what = "id_token" if id_token else "access token"
        # Read without verifying the signature, for DISPLAY ONLY (whose login this is, and until
        # when): the workflow verifies every proof against the issuer's keys before it counts.
        try:
            claims = jwt.decode(id_token or access_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise CredentialsError(f"the provider's {what} is not a JWT, so a workflow could not verify it") from None
        person = claims.get(self.person_claim)
        if not isinstance(person, str) or not person.strip():
            raise CredentialsError(
                f"the provider's {what} has no {_shown(self.person_claim, 80)!r} claim (HITL_OIDC_PERSON_CLAIM) naming the person"
            )
        expires = claims.get("exp")
        if not isinstance(expires, int | float) or isinstance(expires, bool):
            raise CredentialsError(f"the provider's {what} has no exp claim; a workflow refuses proofs without one")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not same_issuer(issuer, self.issuer):
            raise CredentialsError(
                f"the provider's {what} names issuer {_shown(issuer)!r}, not HITL_OIDC_ISSUER {_shown(self.issuer)!r}"
            )
        return CachedLogin(
            issuer=self.issuer,
            client_id=self.client_id,
            access_token=access_token,
            id_token=id_token,
            refresh_token=refresh_token,
            expires_at=datetime.fromtimestamp(expires, UTC),
            person=person,
        )

    def _endpoint(self, document: dict[str, Any], name: str, url: str) -> str | None:
        value = document.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise CredentialsError(f"the discovery document {_shown(url)}: {name} is not a string")
        problem = _endpoint_problem(value)
        if problem:
            raise CredentialsError(f"the discovery document {_shown(url)}: {name} {_shown(value)!r} {problem}")
        return value

    def _exchange(self, method: str, url: str, what: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        """One request; (status, JSON object) for answers below 500, else one CredentialsError line naming `what` and `url`."""
        named = f"{what} {_shown(url)}"
        try:
            with self._client.stream(method, url, headers={"Accept": "application/json"}, **kwargs) as response:
                if response.status_code >= 500:
                    raise CredentialsError(f"{named} answered HTTP {response.status_code}; try again later")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise CredentialsError(f"{named} answered with more than {MAX_ANSWER_BYTES // 1024} KiB")
                status = response.status_code
        except httpx.HTTPError as err:
            raise CredentialsError(f"cannot reach {named}: {_shown(err) or type(err).__name__}") from None
        try:
            answer = loads_strict(bytes(body), what="the answer")
        except JsonInputError as err:
            raise CredentialsError(f"{named} answered HTTP {status} with something that is not JSON ({err})") from None
        if not isinstance(answer, dict):
            raise CredentialsError(f"{named} answered HTTP {status} with JSON that is not an object")
        return status, answer


def _oauth_error(answer: dict[str, Any], status: int) -> str:
    """`error: description` of an OAuth error answer (RFC 6749 §5.2), or the HTTP status."""
    error = answer.get("error")
    if not isinstance(error, str):
        return f"HTTP {status} without an OAuth error"
    description = answer.get("error_description")
    return _shown(error, 80) + (f" ({_shown(description)})" if isinstance(description, str) and description else "")


def _string(answer: dict[str, Any], name: str) -> str:
    value = answer.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(name)
    return value


def _optional_string(answer: dict[str, Any], name: str) -> str | None:
    return None if answer.get(name) in (None, "") else _string(answer, name)


def _seconds(answer: dict[str, Any], name: str, default: float | None) -> float:
    value = answer.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 24 * 3600:
        raise ValueError(f"{name} (seconds)")
    return float(value)
