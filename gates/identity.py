"""Who decided, proven: a decision's `proof` is a signed token (JWT) from an issuer the case trusts.

The workflow verifies it, so everything here is pure and deterministic: the trusted issuers and
their public keys come in a `TrustSnapshot` (the result of the `resolve_trust` activity, recorded
in history), and time is the workflow's `now`, never the wall clock. PyJWT checks the signature
only; every claim (`iss`, `aud`, `exp`, `nbf`, `iat`, the person) is checked here, against `now`.

A refusal is a `ProofRefused` with one line that is safe to show: it never contains the token
(a bearer credential), and it says how to get a valid proof from that issuer.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
import rfc8785
from jwt.exceptions import InvalidKeyError, InvalidSignatureError, PyJWKError, PyJWTError
from pydantic import BaseModel, Field
from pydantic_core import PydanticSerializationError, to_jsonable_python

from gates.json_input import JsonInputError, loads_strict
from gates.text import neutralize

IdentityMode = Literal["verified", "asserted"]

# A proof is a header line, not a document: issuers' tokens are well under 2 KiB.
MAX_PROOF_BYTES = 8 * 1024
# Clock skew tolerated between the issuer and the workflow, by default.
DEFAULT_LEEWAY = timedelta(seconds=60)
# Signature algorithms a proof may use: asymmetric only, so knowing the issuer's public key (which
# is recorded in history) never lets anyone sign. No `none`, no HS*.
ALGORITHMS_BY_KEY: dict[tuple[str, str | None], frozenset[str]] = {
    ("OKP", "Ed25519"): frozenset({"EdDSA"}),
    ("EC", "P-256"): frozenset({"ES256"}),
    ("EC", "P-384"): frozenset({"ES384"}),
    ("EC", "P-521"): frozenset({"ES512"}),
    ("RSA", None): frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
}
ALLOWED_ALGORITHMS: frozenset[str] = frozenset().union(*ALGORITHMS_BY_KEY.values())
# The latest instant a datetime can hold (9999-12-31T23:59:59Z): larger claims are garbage.
_MAX_TIMESTAMP = 253_402_300_799
_PERSON_PLACEHOLDER = "PERSON"
_PERSON_ID = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,79}$")


class IssuerKeys(BaseModel):
    """One trusted issuer as the workflow knows it (recorded in history): public keys only."""

    issuer: str = Field(description="The `iss` value tokens must carry")
    audience: str = Field(description="The `aud` value tokens must carry")
    person_claim: str = Field(default="sub", description="Claim holding the person id (directory id, e.g. fin_rev_ana)")
    jwks: dict[str, Any] = Field(description='{"keys": [public JWKs]}; never private material')
    fetched_at: datetime
    source: Literal["local", "oidc"]
    how_to_get: str = Field(description="One short hint, e.g. `hitl token --as PERSON` (local issuer)")

    def keys(self) -> list[dict[str, Any]]:
        """The issuer's signing keys that are JWK objects (anything else in the set is ignored)."""
        keys = self.jwks.get("keys")
        if not isinstance(keys, list):
            return []
        return [key for key in keys if isinstance(key, dict) and isinstance(key.get("kty"), str) and key.get("use") != "enc"]


class TrustSnapshot(BaseModel):
    """What the workflow verifies proofs against: the `resolve_trust` activity's result."""

    mode: IdentityMode
    issuers: list[IssuerKeys] = Field(default_factory=list, description="Empty in asserted mode")

    def key_ids(self) -> set[str]:
        """Every key id (kid) any trusted issuer lists: a proof naming another one needs fresh keys."""
        return {key["kid"] for issuer in self.issuers for key in issuer.keys() if isinstance(key.get("kid"), str)}


class TrustRequest(BaseModel):
    """Input of `resolve_trust`: cached keys by default; fresh ones after a proof named an unknown kid."""

    refresh: bool = False
    unknown_key_id: str | None = None


class VerifiedProof(BaseModel):
    """What a valid proof established: who, according to which issuer and key, until when."""

    person: str
    issuer: str
    subject: str
    token_id: str | None
    key_id: str | None
    expires_at: datetime


class ProofRefused(Exception):
    """A proof that does not prove the decision is the named person's.

    The message is one line, safe to show (it never echoes the token), and ends with how to get a
    valid proof. `unknown_key_id` is set when the token names a key id that the issuer does not list
    in the snapshot: its keys may have rotated, so the caller refreshes them and verifies again."""

    def __init__(self, message: str, *, unknown_key_id: str | None = None):
        super().__init__(message)
        self.unknown_key_id = unknown_key_id


def _plain(value: object, limit: int = 80) -> str:
    """A value taken from the token, as one visible line of bounded length, for a message."""
    text = neutralize(value if isinstance(value, str) else repr(value), keep_newlines=False)
    return text if len(text) <= limit else text[:limit] + "…"


def _shown(value: object, limit: int = 80) -> str:
    """`_plain`, quoted: for names (issuers, key ids) that could otherwise run into the sentence."""
    return repr(_plain(value, limit))


def how_to_get_proof(issuers: Iterable[IssuerKeys], person: str) -> str:
    """How to get a proof from these issuers, with the person filled in when it is a valid id."""
    shown = person if _PERSON_ID.match(person) else _PERSON_PLACEHOLDER
    hints = list(dict.fromkeys(issuer.how_to_get.replace(_PERSON_PLACEHOLDER, shown) for issuer in issuers))
    return " or ".join(hints) if hints else "no proof issuer is configured (HITL_IDENTITY=verified needs one)"


def _instant(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim (seconds since the epoch) or None when absent; garbage is refused by the caller."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(name)
    if not 0 <= value <= _MAX_TIMESTAMP:
        raise ValueError(name)
    return float(value)


def _decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS, without checking anything; ValueError if it is not one."""
    try:
        parts = jwt.PyJWS().decode_complete(token, options={"verify_signature": False})
        claims = loads_strict(parts["payload"], what="the token's claims")
    except (PyJWTError, JsonInputError, ValueError, TypeError) as err:
        raise ValueError("not a JWT") from err
    header = parts["header"]
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("not a JWT")
    return header, claims


def _choose_key(issuer: IssuerKeys, kid: str | None, hint: str) -> dict[str, Any]:
    keys = issuer.keys()
    name = _shown(issuer.issuer)
    if kid is None:
        if len(keys) == 1:
            return keys[0]
        raise ProofRefused(f"proof names no key id (kid) and issuer {name} has {len(keys)} keys; get one: {hint}")
    matching = [key for key in keys if key.get("kid") == kid]
    if not matching:
        raise ProofRefused(
            f"proof is signed with key {_shown(kid)}, which issuer {name} does not list (its keys may have changed); "
            f"get a fresh one: {hint}",
            unknown_key_id=kid,
        )
    return matching[0]


def _key_algorithms(key: dict[str, Any]) -> frozenset[str]:
    """The algorithms this JWK may verify: by its type (and curve), narrowed to its own `alg` if it names one."""
    kty, curve = str(key.get("kty")), key.get("crv")
    algorithms = ALGORITHMS_BY_KEY.get((kty, None if kty == "RSA" else str(curve)), frozenset())
    declared = key.get("alg")
    if isinstance(declared, str):
        return algorithms & {declared}
    return algorithms


def verify_proof(
    token: object,
    trust: TrustSnapshot,
    *,
    person: str,
    now: datetime,
    leeway: timedelta = DEFAULT_LEEWAY,
) -> VerifiedProof:
    """The proof's findings if `token` is a valid proof that `person` is acting, at `now` (the workflow's time).

    Raises ProofRefused (one line, no token in it) otherwise. Deterministic: same inputs, same result."""
    hint = how_to_get_proof(trust.issuers, person)
    if not isinstance(token, str):
        raise ProofRefused(f"proof must be a signed token (a string), not {type(token).__name__}; get one: {hint}")
    if not token.strip():
        raise ProofRefused(f"proof is empty; get one: {hint}")
    size = len(token.encode("utf-8", errors="surrogatepass"))
    if size > MAX_PROOF_BYTES:
        raise ProofRefused(f"proof is {size} bytes; a signed token is at most {MAX_PROOF_BYTES}; get one: {hint}")
    try:
        header, claims = _decode_unverified(token.strip())
    except ValueError:
        raise ProofRefused(f"proof is not a signed token (JWT); get one: {hint}") from None

    algorithm = header.get("alg")
    if not isinstance(algorithm, str):
        raise ProofRefused(f"proof names no signature algorithm (alg); get one: {hint}")
    if algorithm.lower() == "none":
        raise ProofRefused(f"proof is not signed (alg none); get a signed one: {hint}")
    if algorithm not in ALLOWED_ALGORITHMS:
        raise ProofRefused(
            f"proof is signed with {_shown(algorithm)}; only issuer-signed proofs (EdDSA, ES256, RS256, PS256, …) "
            f"are accepted; get one: {hint}"
        )
    if "crit" in header:
        raise ProofRefused(f"proof has critical header extensions (crit), which are not supported; get one: {hint}")

    claimed_issuer = claims.get("iss")
    issuer = next((known for known in trust.issuers if known.issuer == claimed_issuer), None)
    if issuer is None:
        trusted = ", ".join(_shown(known.issuer) for known in trust.issuers) or "none"
        what = f"from issuer {_shown(claimed_issuer)}" if claimed_issuer is not None else "names no issuer (iss)"
        raise ProofRefused(f"proof is {what}, which is not trusted (trusted: {trusted}); get one: {hint}")
    hint = how_to_get_proof([issuer], person)
    name = _shown(issuer.issuer)

    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ProofRefused(f"proof's key id (kid) is not a string; get one: {hint}")
    key = _choose_key(issuer, kid, hint)
    key_name = _shown(key.get("kid", "(no kid)"))
    if algorithm not in _key_algorithms(key):
        expected = ", ".join(sorted(_key_algorithms(key))) or "nothing (it is not a signing key)"
        raise ProofRefused(
            f"proof is signed with {_shown(algorithm)}, but issuer {name}'s key {key_name} verifies {expected}; get one: {hint}"
        )
    claims = _signed_claims(token.strip(), issuer, key, algorithm, hint)
    _check_audience(claims.get("aud"), issuer, hint)
    expires = _check_times(claims, now, leeway, hint)

    holder = claims.get(issuer.person_claim)
    if not isinstance(holder, str) or not holder:
        raise ProofRefused(f"proof names no person (its {_shown(issuer.person_claim)} claim is missing); get one: {hint}")
    if holder != person:
        raise ProofRefused(f"this proof is {_plain(holder)}'s, not {_plain(person)}'s; get your own: {hint}")
    subject = claims.get("sub")
    token_id = claims.get("jti")
    return VerifiedProof(
        person=holder,
        issuer=issuer.issuer,
        subject=subject if isinstance(subject, str) else holder,
        token_id=token_id if isinstance(token_id, str) else None,
        key_id=key.get("kid") if isinstance(key.get("kid"), str) else None,
        expires_at=datetime.fromtimestamp(expires, UTC),
    )


def _signed_claims(token: str, issuer: IssuerKeys, key: dict[str, Any], algorithm: str, hint: str) -> dict[str, Any]:
    """The claims of `token` once its signature verifies with `key`, by `algorithm` only."""
    name, key_name = _shown(issuer.issuer), _shown(key.get("kid", "(no kid)"))
    try:
        public_key = jwt.PyJWK(key, algorithm=algorithm)
    except (PyJWKError, PyJWTError, ValueError, TypeError):
        raise ProofRefused(f"issuer {name}'s key {key_name} is not a usable public key; ask its administrator") from None
    try:
        verified = jwt.PyJWS().decode_complete(
            token, key=public_key, algorithms=[algorithm], options={"enforce_minimum_key_length": True}
        )
    except InvalidKeyError:
        raise ProofRefused(f"issuer {name}'s key {key_name} is too weak to trust (too short); ask its administrator") from None
    except InvalidSignatureError:
        raise ProofRefused(
            f"proof's signature does not verify with issuer {name}'s key {key_name} (forged or altered); get one: {hint}"
        ) from None
    except PyJWTError:
        raise ProofRefused(f"proof is not a valid signed token (JWT); get one: {hint}") from None
    claims: dict[str, Any] = loads_strict(verified["payload"], what="the token's claims")  # the very bytes that were signed
    return claims


def _check_times(claims: dict[str, Any], now: datetime, leeway: timedelta, hint: str) -> float:
    """The proof's expiry (seconds since the epoch), once `exp`, `nbf` and `iat` hold at `now`, give or take `leeway`."""
    current = (now if now.tzinfo is not None else now.replace(tzinfo=UTC)).timestamp()
    slack = leeway.total_seconds()
    try:
        expires, not_before, issued = (_numeric_date(claims, claim) for claim in ("exp", "nbf", "iat"))
    except ValueError as err:
        raise ProofRefused(f"proof's {err} claim is not a time (seconds since 1970); get one: {hint}") from None
    if expires is None:
        raise ProofRefused(f"proof has no expiry (exp), so it would be valid forever; get one that expires: {hint}")
    if expires <= current - slack:
        raise ProofRefused(f"proof expired at {_instant(expires)}; get a fresh one: {hint}")
    if not_before is not None and not_before > current + slack:
        raise ProofRefused(f"proof is not valid before {_instant(not_before)}; check the issuer's clock, or get one: {hint}")
    if issued is not None and issued > current + slack:
        raise ProofRefused(f"proof was issued in the future ({_instant(issued)}); check the issuer's clock, or get one: {hint}")
    return expires


def _check_audience(audience: object, issuer: IssuerKeys, hint: str) -> None:
    """`aud` is one string or a list of strings, and names this issuer's audience for us."""
    if audience is None:
        raise ProofRefused(f"proof names no audience (aud); it must be for {_shown(issuer.audience)}; get one: {hint}")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or not all(isinstance(item, str) for item in audiences):
        raise ProofRefused(f"proof's audience (aud) is not a string or a list of strings; get one: {hint}")
    if issuer.audience not in audiences:
        shown = ", ".join(_shown(item) for item in audiences[:3]) + (", …" if len(audiences) > 3 else "")
        raise ProofRefused(f"proof is for audience {shown or 'none'}, not {_shown(issuer.audience)}; get one: {hint}")


def evidence_digest(value: Any) -> str:
    """`sha256:<hex>` of the RFC 8785 canonical JSON of `value` (pydantic models as their JSON form).

    Canonical, so the digest a decision is bound to does not change with key order or number
    formatting (1.0 and 1 are the same JSON number) between whoever computed it and the workflow."""
    try:
        # as model_dump(mode="json") writes models, but NaN and infinities kept (and refused), not turned into null
        canonical = rfc8785.dumps(to_jsonable_python(value, by_alias=False))
    except (rfc8785.CanonicalizationError, PydanticSerializationError, ValueError, TypeError) as err:
        raise ValueError(f"evidence cannot be written as canonical JSON: {err}") from None
    return "sha256:" + hashlib.sha256(canonical).hexdigest()
