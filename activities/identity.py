"""Where the trusted issuers' public keys come from: the local issuer's key file, and OIDC discovery.

`resolve_trust` (a local activity the workflow calls before it verifies a proof) returns a
`TrustSnapshot`: public keys only, recorded in history, so replay verifies with the keys the
case saw. Keys from an OIDC issuer are cached in this process for five minutes; a proof naming a
key id (kid) the cache does not have, or `refresh=True`, fetches them again (keys rotate).

Failures, by kind:
- the issuer cannot be reached, times out, or answers 5xx/429: `ApplicationError(type="IssuerUnavailable")`,
  retryable;
- it answers, but not with what OIDC promises (no `jwks_uri`, another `issuer`, malformed JSON, http
  where https is needed, a body too large): `ApplicationError(type="IssuerMisconfigured")`,
  non-retryable, naming the URL;
- the local issuer's key file is unreadable, corrupt or not ours: `LocalIssuerError`, non-retryable.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.bounded_read import BodyTooLarge, FileUnreadable, read_at_most, read_file_at_most
from activities.key_files import MAX_KEY_FILE_BYTES, create_private_file
from gates.identity import IssuerKeys, TrustRequest, TrustSnapshot
from gates.json_input import JsonInputError, loads_strict
from workers.config import Settings, http_url_problem, is_loopback_host

LOCAL_ISSUER = "hitl-local"
LOCAL_AUDIENCE = "hitl"
LOCAL_HOW_TO_GET = "`hitl token --as PERSON` (local issuer)"
OIDC_HOW_TO_GET = "`hitl login`"
ISSUER_UNAVAILABLE = "IssuerUnavailable"
ISSUER_MISCONFIGURED = "IssuerMisconfigured"

# How long this process trusts the keys it fetched before asking the issuer again.
KEY_CACHE_TTL = timedelta(minutes=5)
OIDC_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# A discovery document is a few KiB, a key set a few keys; more is not an issuer answering.
MAX_DISCOVERY_BYTES = 256 * 1024
MAX_JWKS_BYTES = 256 * 1024
MAX_KEYS = 50
# The members of a public JWK we keep (RFC 7517/7518); everything else is dropped before the keys
# reach history: private members (d, p, q, dp, dq, qi, oth, k) and bulk (x5c chains).
PUBLIC_JWK_MEMBERS = ("kty", "kid", "use", "alg", "key_ops", "crv", "x", "y", "n", "e")
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# Tokens the local issuer mints live at most this long: it is for a laptop session, not a credential to keep.
MAX_LOCAL_TTL = timedelta(days=7)


class LocalIssuerError(Exception):
    """The local issuer's key file cannot be used; one line naming the file and what to do."""


def _b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class LocalIssuer:
    """A token issuer that lives in the state directory: an Ed25519 key in `<state_dir>/identity/local-issuer.pem`.

    It is for a laptop, not for production: whoever can read the state directory can sign a proof
    for anyone, so it proves only that the decision came from someone with access to this machine's
    state directory. The key is created on first use (file 0600, directory 0700); two processes
    creating it at once end up with one key (written aside, then hard-linked into place only if absent).
    """

    issuer = LOCAL_ISSUER
    algorithm = "EdDSA"

    def __init__(self, state_dir: Path, *, audience: str = LOCAL_AUDIENCE):
        self.path = state_dir / "identity" / "local-issuer.pem"
        self.audience = audience
        self._key: Ed25519PrivateKey | None = None

    def _private_key(self) -> Ed25519PrivateKey:
        if self._key is None:
            self._key = self._load() if self.path.exists() else self._create()
        return self._key

    def _load(self) -> Ed25519PrivateKey:
        try:
            data = read_file_at_most(self.path, MAX_KEY_FILE_BYTES, what="local issuer key")
        except FileUnreadable as err:
            raise LocalIssuerError(f"cannot read the local issuer key: {err}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise LocalIssuerError(
                f"{self.path} is not a readable PEM private key (corrupt or encrypted); "
                "delete it to create a new one (proofs signed with the old key stop verifying)"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise LocalIssuerError(
                f"{self.path} holds a {type(key).__name__.removeprefix('_')}, not the local issuer's Ed25519 key"
            )
        return key

    def _create(self) -> Ed25519PrivateKey:
        """A new key, unless another process created one first (then that one)."""
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        try:
            created = create_private_file(self.path, pem)
        except OSError as err:
            raise LocalIssuerError(f"cannot create the local issuer key {self.path}: {err.strerror or err}") from None
        return key if created else self._load()

    def public_jwk(self) -> dict[str, Any]:
        """The public key as a JWK, with its RFC 7638 thumbprint as `kid`."""
        raw = self._private_key().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        members = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
        # RFC 7638: the required members, sorted, no whitespace, hashed with SHA-256.
        thumbprint = _b64url(sha256(json.dumps(members, sort_keys=True, separators=(",", ":")).encode()).digest())
        return {**members, "kid": thumbprint, "alg": self.algorithm, "use": "sig"}

    @property
    def kid(self) -> str:
        return str(self.public_jwk()["kid"])

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}

    def mint(
        self, person: str, *, ttl: timedelta = timedelta(hours=1), audience: str | None = None, now: datetime | None = None
    ) -> str:
        """A proof that `person` is acting, valid from `now` for `ttl`."""
        if not timedelta(seconds=1) <= ttl <= MAX_LOCAL_TTL:
            raise ValueError(f"a local proof lives at least 1 second and at most {MAX_LOCAL_TTL.days} days")
        issued = int((now or datetime.now(UTC)).timestamp())
        claims = {
            "iss": self.issuer,
            "aud": audience or self.audience,
            "sub": person,
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(ttl.total_seconds()),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._private_key(), algorithm=self.algorithm, headers={"kid": self.kid})

    def issuer_keys(self, *, fetched_at: datetime) -> IssuerKeys:
        return IssuerKeys(
            issuer=self.issuer,
            audience=self.audience,
            jwks=self.jwks(),
            fetched_at=fetched_at,
            source="local",
            how_to_get=LOCAL_HOW_TO_GET,
        )


def local_issuer_enabled(settings: Settings) -> bool:
    """Is the state directory's own issuer trusted? `auto` means: when no OIDC issuer is configured."""
    return settings.local_issuer == "on" or (settings.local_issuer == "auto" and not settings.oidc_issuer)


def public_jwks(document: object, *, url: str) -> dict[str, Any]:
    """The public signing keys of a JWKS document, each stripped to its public members."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        _misconfigured(f'{url} is not a JSON Web Key Set (no "keys" list)')
    if len(keys) > MAX_KEYS:
        _misconfigured(f"{url} lists {len(keys)} keys; at most {MAX_KEYS} are accepted")
    public = []
    for key in keys:
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str) or key["kty"] == "oct" or key.get("use") == "enc":
            continue  # not a signing key we can use: symmetric, for encryption, or not a JWK
        kept = {member: key[member] for member in PUBLIC_JWK_MEMBERS if member in key}
        public.append(kept)
    return {"keys": public}


def _misconfigured(message: str) -> NoReturn:
    raise ApplicationError(message, type=ISSUER_MISCONFIGURED, non_retryable=True)


def _unavailable(message: str) -> NoReturn:
    raise ApplicationError(message, type=ISSUER_UNAVAILABLE)


@dataclass
class _Cached:
    keys: IssuerKeys
    fetched: float  # time.monotonic()


class IdentityActivities:
    """The issuers this worker trusts, from its configuration (never from activity inputs)."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None):
        self._settings = settings
        self._transport = transport
        self._cache: dict[str, _Cached] = {}

    @activity.defn(name="resolve_trust")
    async def resolve_trust(self, request: TrustRequest) -> TrustSnapshot:
        """The trusted issuers and their public keys (read-only, idempotent)."""
        settings = self._settings
        if settings.identity == "asserted":
            return TrustSnapshot(mode="asserted")
        now = datetime.now(UTC)
        issuers: list[IssuerKeys] = []
        if local_issuer_enabled(settings):
            local = LocalIssuer(settings.state_dir)
            try:
                issuers.append(await asyncio.to_thread(local.issuer_keys, fetched_at=now))
            except LocalIssuerError as err:
                raise ApplicationError(str(err), type="LocalIssuerError", non_retryable=True) from None
        if settings.oidc_issuer:
            issuers.append(await self._oidc_keys(settings.oidc_issuer, request, now))
        return TrustSnapshot(mode="verified", issuers=issuers)

    async def _oidc_keys(self, issuer: str, request: TrustRequest, now: datetime) -> IssuerKeys:
        cached = self._cache.get(issuer)
        fresh = cached is not None and time.monotonic() - cached.fetched < KEY_CACHE_TTL.total_seconds()
        known = cached is not None and (
            request.unknown_key_id is None
            or request.unknown_key_id in TrustSnapshot(mode="verified", issuers=[cached.keys]).key_ids()
        )
        if cached is not None and fresh and known and not request.refresh:
            return cached.keys
        keys = await self._fetch_oidc(issuer, now)
        self._cache[issuer] = _Cached(keys, time.monotonic())
        return keys

    async def _fetch_oidc(self, issuer: str, now: datetime) -> IssuerKeys:
        settings = self._settings
        discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        async with httpx.AsyncClient(timeout=OIDC_TIMEOUT, transport=self._transport, follow_redirects=False) as client:
            discovery = await self._get_json(client, discovery_url, MAX_DISCOVERY_BYTES)
            if not isinstance(discovery, dict):
                _misconfigured(f"{discovery_url} is not an OpenID configuration (not a JSON object)")
            stated = discovery.get("issuer")
            if not isinstance(stated, str) or stated.rstrip("/") != issuer.rstrip("/"):
                stated = str(stated)[:200]
                _misconfigured(
                    f"{discovery_url} says its issuer is {stated!r}, not {issuer!r}; set HITL_OIDC_ISSUER to the exact issuer"
                )
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri:
                _misconfigured(f"{discovery_url} has no jwks_uri (where the issuer's keys are)")
            problem = http_url_problem(jwks_uri)
            if problem:
                _misconfigured(f"the jwks_uri in {discovery_url} {problem}")
            parts = urlsplit(jwks_uri)
            if parts.scheme != "https" and not is_loopback_host(parts.hostname):
                _misconfigured(
                    f"the jwks_uri in {discovery_url} is not https ({jwks_uri[:200]}); keys must not travel in the clear"
                )
            jwks = public_jwks(await self._get_json(client, jwks_uri, MAX_JWKS_BYTES), url=jwks_uri)
        audience = settings.oidc_audience or settings.oidc_client_id
        assert audience, "Settings refuses an OIDC issuer without an audience"
        return IssuerKeys(
            issuer=discovery["issuer"],  # exactly as its tokens carry it (a trailing slash is not a typo to forgive there)
            audience=audience,
            person_claim=settings.oidc_person_claim,
            jwks=jwks,
            fetched_at=now,
            source="oidc",
            how_to_get=OIDC_HOW_TO_GET,
        )

    @staticmethod
    async def _get_json(client: httpx.AsyncClient, url: str, limit: int) -> Any:
        try:
            async with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
                if response.status_code >= 500 or response.status_code == 429:
                    _unavailable(f"{url} answered {response.status_code}; will retry")
                if response.status_code != 200:
                    _misconfigured(f"{url} answered {response.status_code}, not 200; check HITL_OIDC_ISSUER")
                body = await read_at_most(response, limit)
        except BodyTooLarge:
            _misconfigured(f"{url} answered with more than {limit // 1024} KiB; not an issuer's document")
        except httpx.TransportError as err:
            _unavailable(f"cannot reach {url}: {type(err).__name__}{': ' + str(err) if str(err) else ''}")
        try:
            return loads_strict(body, what=f"the answer of {url}")
        except JsonInputError as err:
            _misconfigured(str(err))
