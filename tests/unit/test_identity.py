"""Proofs of who decided (gates/identity.py): what a valid proof establishes, why each bad one is
refused (in one line, without the token, with how to get a good one), the workflow's clock, the
evidence digest, the local issuer, and verification inside the Temporal workflow sandbox."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from jwt.algorithms import OKPAlgorithm
from pydantic import BaseModel
from temporalio.worker import Worker

from activities.identity import LocalIssuer, LocalIssuerError
from gates.identity import IssuerKeys, ProofRefused, TrustSnapshot, evidence_digest, verify_proof
from tests.unit.identity_workflow import ProofCheck, ProofCheckResult, ProofCheckWorkflow
from workers.worker import WORKFLOW_RUNNER

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
ISSUER = "https://id.example.com"
HOW_TO_GET = "`hitl login`"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Issuer:
    """A test issuer: an Ed25519 key, its public JWK under `kid`, and a way to sign claims."""

    kid: str = "key-1"
    issuer: str = ISSUER
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    def jwk(self) -> dict[str, Any]:
        return {**OKPAlgorithm.to_jwk(self.key.public_key(), as_dict=True), "kid": self.kid, "use": "sig"}

    def keys(self, *jwks: dict[str, Any]) -> IssuerKeys:
        return IssuerKeys(
            issuer=self.issuer,
            audience="hitl",
            jwks={"keys": list(jwks) or [self.jwk()]},
            fetched_at=NOW,
            source="oidc",
            how_to_get=HOW_TO_GET,
        )

    def claims(self, person: str = "fin_rev_ana", **changes: Any) -> dict[str, Any]:
        claims = {
            "iss": self.issuer,
            "aud": "hitl",
            "sub": person,
            "iat": int(NOW.timestamp()) - 60,
            "nbf": int(NOW.timestamp()) - 60,
            "exp": int(NOW.timestamp()) + 3600,
            "jti": uuid.uuid4().hex,
        }
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, claims: dict[str, Any] | None = None, *, kid: str | None = "key-1", **changes: Any) -> str:
        return jwt.encode(claims or self.claims(**changes), self.key, algorithm="EdDSA", headers={"kid": kid} if kid else None)


def trusting(*issuers: IssuerKeys) -> TrustSnapshot:
    return TrustSnapshot(mode="verified", issuers=list(issuers))


def refusal(token: object, trust: TrustSnapshot, *, person: str = "fin_rev_ana", now: datetime = NOW) -> ProofRefused:
    """The refusal of `token`, checked for what every refusal promises: one line, no token in it, how to get one."""
    with pytest.raises(ProofRefused) as refused:
        verify_proof(token, trust, person=person, now=now)
    message = str(refused.value)
    assert "\n" not in message and "\r" not in message
    if isinstance(token, str) and token:
        assert token not in message
        for part in token.split("."):
            assert len(part) < 16 or part not in message
    return refused.value


def unsigned_token(claims: dict[str, Any], header: dict[str, Any]) -> str:
    return ".".join(_b64(json.dumps(part).encode()) for part in (header, claims)) + "."


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


def test_a_good_proof_establishes_the_person_issuer_key_and_expiry(issuer: Issuer):
    claims = issuer.claims()

    proof = verify_proof(issuer.sign(claims), trusting(issuer.keys()), person="fin_rev_ana", now=NOW)

    assert (proof.person, proof.issuer, proof.subject, proof.key_id) == ("fin_rev_ana", ISSUER, "fin_rev_ana", "key-1")
    assert proof.token_id == claims["jti"]
    assert proof.expires_at == NOW + timedelta(hours=1)


def test_the_same_proof_verifies_the_same_way_twice(issuer: Issuer):
    token, trust = issuer.sign(), trusting(issuer.keys())

    assert verify_proof(token, trust, person="fin_rev_ana", now=NOW) == verify_proof(token, trust, person="fin_rev_ana", now=NOW)


def test_a_proof_with_a_list_of_audiences_including_ours_is_accepted(issuer: Issuer):
    token = issuer.sign(aud=["other-app", "hitl"])

    assert verify_proof(token, trusting(issuer.keys()), person="fin_rev_ana", now=NOW).person == "fin_rev_ana"


def test_a_proof_without_kid_is_checked_against_the_issuers_only_key(issuer: Issuer):
    assert verify_proof(issuer.sign(kid=None), trusting(issuer.keys()), person="fin_rev_ana", now=NOW).key_id == "key-1"


def test_a_proof_naming_its_person_in_another_claim_is_read_from_that_claim(issuer: Issuer):
    keys = issuer.keys().model_copy(update={"person_claim": "preferred_username"})
    token = issuer.sign(sub="00u1abc", preferred_username="fin_rev_ana")

    proof = verify_proof(token, trusting(keys), person="fin_rev_ana", now=NOW)

    assert (proof.person, proof.subject) == ("fin_rev_ana", "00u1abc")


def test_an_expired_proof_is_refused_against_the_workflows_time(issuer: Issuer):
    token = issuer.sign(exp=int(NOW.timestamp()) + 3600)

    refused = refusal(token, trusting(issuer.keys()), now=NOW + timedelta(hours=2))

    assert str(refused) == "proof expired at 2026-12-02T10:00:00Z; get a fresh one: `hitl login`"


def test_a_proof_that_expired_within_the_leeway_is_still_accepted(issuer: Issuer):
    token = issuer.sign(exp=int(NOW.timestamp()) - 30)

    assert verify_proof(token, trusting(issuer.keys()), person="fin_rev_ana", now=NOW).person == "fin_rev_ana"


def test_verification_uses_the_time_it_is_given_not_the_wall_clock(issuer: Issuer):
    """A proof that expired years ago in wall time is good at a `now` when it was valid (a workflow replaying)."""
    then = datetime(2020, 3, 1, 12, 0, tzinfo=UTC)
    token = issuer.sign(iat=int(then.timestamp()), nbf=int(then.timestamp()), exp=int(then.timestamp()) + 600)

    assert (
        verify_proof(token, trusting(issuer.keys()), person="fin_rev_ana", now=then + timedelta(minutes=5)).person
        == "fin_rev_ana"
    )
    assert "expired at 2020-03-01T12:10:00Z" in str(refusal(token, trusting(issuer.keys()), now=then + timedelta(minutes=20)))


def test_a_proof_not_valid_yet_is_refused(issuer: Issuer):
    token = issuer.sign(nbf=int(NOW.timestamp()) + 600)

    assert str(refusal(token, trusting(issuer.keys()))).startswith("proof is not valid before 2026-12-02T09:10:00Z;")


def test_a_proof_for_another_audience_is_refused(issuer: Issuer):
    refused = refusal(issuer.sign(aud="payroll"), trusting(issuer.keys()))

    assert str(refused) == "proof is for audience 'payroll', not 'hitl'; get one: `hitl login`"


def test_a_proof_from_an_untrusted_issuer_is_refused_naming_the_trusted_ones(issuer: Issuer):
    stranger = Issuer(issuer="https://evil.example.net", key=issuer.key)

    refused = refusal(stranger.sign(), trusting(issuer.keys()))

    assert str(refused) == (
        "proof is from issuer 'https://evil.example.net', which is not trusted (trusted: 'https://id.example.com'); "
        "get one: `hitl login`"
    )


def test_a_proof_signed_by_another_key_under_the_same_kid_is_refused_as_forged(issuer: Issuer):
    forger = Issuer()  # a fresh key, claiming the issuer's name and kid

    refused = refusal(forger.sign(), trusting(issuer.keys()))

    assert "signature does not verify with issuer 'https://id.example.com''s key 'key-1' (forged or altered)" in str(refused)
    assert refused.unknown_key_id is None


def test_an_altered_proof_is_refused(issuer: Issuer):
    header, _, signature = issuer.sign().split(".")
    altered = ".".join([header, _b64(json.dumps(issuer.claims(person="vp_ops_raj")).encode()), signature])

    assert "forged or altered" in str(refusal(altered, trusting(issuer.keys()), person="vp_ops_raj"))


def test_an_unsigned_proof_is_refused(issuer: Issuer):
    token = unsigned_token(issuer.claims(), {"alg": "none", "kid": "key-1"})

    assert str(refusal(token, trusting(issuer.keys()))) == "proof is not signed (alg none); get a signed one: `hitl login`"


def test_a_proof_signed_with_the_public_key_as_an_hmac_secret_is_refused(issuer: Issuer):
    """The classic key-confusion forgery: HS256 keyed with the (public) JWK bytes."""
    signing_input = ".".join(_b64(json.dumps(part).encode()) for part in ({"alg": "HS256", "kid": "key-1"}, issuer.claims()))
    secret = json.dumps(issuer.jwk()).encode()
    token = signing_input + "." + _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())

    refused = refusal(token, trusting(issuer.keys()))

    assert str(refused).startswith("proof is signed with 'HS256'; only issuer-signed proofs")


def test_a_proof_whose_algorithm_does_not_match_the_key_is_refused(issuer: Issuer):
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(issuer.claims(), rsa, algorithm="RS256", headers={"kid": "key-1"})

    refused = refusal(token, trusting(issuer.keys()))

    assert "proof is signed with 'RS256', but issuer 'https://id.example.com''s key 'key-1' verifies EdDSA" in str(refused)


def test_someone_elses_proof_is_refused_naming_both_people(issuer: Issuer):
    refused = refusal(issuer.sign(person="fin_rev_ben"), trusting(issuer.keys()), person="vp_ops_raj")

    assert str(refused) == "this proof is fin_rev_ben's, not vp_ops_raj's; get your own: `hitl login`"


def test_a_proof_from_a_key_the_issuer_does_not_list_names_the_key_to_fetch(issuer: Issuer):
    rotated = Issuer(kid="key-2")

    refused = refusal(rotated.sign(kid="key-2"), trusting(issuer.keys()))

    assert refused.unknown_key_id == "key-2"
    assert "signed with key 'key-2', which issuer 'https://id.example.com' does not list" in str(refused)


def test_a_proof_without_kid_is_refused_when_the_issuer_has_several_keys(issuer: Issuer):
    keys = issuer.keys(issuer.jwk(), Issuer(kid="key-2").jwk())

    assert "names no key id (kid) and issuer 'https://id.example.com' has 2 keys" in str(
        refusal(issuer.sign(kid=None), trusting(keys))
    )


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (None, "proof must be a signed token (a string), not NoneType; get one: `hitl login`"),
        (42, "proof must be a signed token (a string), not int; get one: `hitl login`"),
        ("", "proof is empty; get one: `hitl login`"),
        ("   ", "proof is empty; get one: `hitl login`"),
        ("approved-by-me", "proof is not a signed token (JWT); get one: `hitl login`"),
        ("a.b.c", "proof is not a signed token (JWT); get one: `hitl login`"),
        ("eyJhbGciOiJFZERTQSJ9.bm90IGpzb24.c2ln", "proof is not a signed token (JWT); get one: `hitl login`"),
    ],
)
def test_garbage_is_refused_as_not_a_token(token: object, expected: str, issuer: Issuer):
    assert str(refusal(token, trusting(issuer.keys()))) == expected


def test_a_huge_proof_is_refused_before_it_is_parsed(issuer: Issuer):
    token = issuer.sign(padding="x" * 10 * 1024)

    refused = refusal(token, trusting(issuer.keys()))

    assert str(refused).startswith(f"proof is {len(token)} bytes; a signed token is at most 8192;")


def test_a_proof_without_expiry_is_refused(issuer: Issuer):
    claims = issuer.claims()
    del claims["exp"]

    assert str(refusal(issuer.sign(claims), trusting(issuer.keys()))).startswith("proof has no expiry (exp)")


def test_a_proof_without_the_person_claim_is_refused(issuer: Issuer):
    claims = issuer.claims()
    del claims["sub"]

    refused = refusal(issuer.sign(claims), trusting(issuer.keys()))

    assert str(refused) == "proof names no person (its 'sub' claim is missing); get one: `hitl login`"


def test_a_proof_with_a_time_that_is_not_a_number_is_refused(issuer: Issuer):
    assert "proof's exp claim is not a time" in str(refusal(issuer.sign(exp="tomorrow"), trusting(issuer.keys())))


def test_hidden_characters_from_a_token_are_shown_as_marks_in_the_one_line(issuer: Issuer):
    refused = refusal(issuer.sign(aud="pay\nroll\u202e"), trusting(issuer.keys()))

    assert "'pay⟨U+000A⟩roll⟨U+202E⟩'" in str(refused)


def test_the_hint_names_the_person_for_the_local_issuer(issuer: Issuer):
    keys = issuer.keys().model_copy(update={"how_to_get": "`hitl token --as PERSON` (local issuer)"})

    refused = refusal(issuer.sign(exp=int(NOW.timestamp()) - 3600), trusting(keys), person="fin_rev_ana")

    assert str(refused) == "proof expired at 2026-12-02T08:00:00Z; get a fresh one: `hitl token --as fin_rev_ana` (local issuer)"


def test_with_no_issuer_trusted_the_refusal_says_so(issuer: Issuer):
    refused = refusal(issuer.sign(), TrustSnapshot(mode="asserted"))

    assert "not trusted (trusted: none)" in str(refused)
    assert "no proof issuer is configured" in str(refused)


def test_key_ids_lists_every_issuers_keys(issuer: Issuer):
    other = Issuer(issuer="hitl-local", kid="local-1")

    assert trusting(issuer.keys(), other.keys(other.jwk())).key_ids() == {"key-1", "local-1"}


# -- the evidence digest ------------------------------------------------------------------------------


def test_the_evidence_digest_does_not_depend_on_key_order():
    assert evidence_digest({"b": [1, 2], "a": {"y": "é", "x": None}}) == evidence_digest(
        {"a": {"x": None, "y": "é"}, "b": [1, 2]}
    )


def test_the_evidence_digest_reads_numbers_as_json_does():
    """RFC 8785: 1.0 and 1 (and 1e2 and 100) are the same JSON number, so the same evidence."""
    assert evidence_digest({"amount": 1.0, "count": 1e2}) == evidence_digest({"amount": 1, "count": 100})
    assert evidence_digest({"amount": 1.5}) != evidence_digest({"amount": 1})


def test_the_evidence_digest_is_sha256_of_the_canonical_json():
    expected = "sha256:" + hashlib.sha256(b'{"a":[100,0.1],"b":"x"}').hexdigest()

    assert evidence_digest({"b": "x", "a": [1e2, 0.1]}) == expected


def test_the_evidence_digest_of_a_model_is_that_of_its_json_form():
    class Finding(BaseModel):
        source: str
        amount: Decimal
        seen_at: datetime

    finding = Finding(source="crm", amount=Decimal("12.50"), seen_at=NOW)

    assert evidence_digest(finding) == evidence_digest(finding.model_dump(mode="json"))
    assert evidence_digest([finding]) == evidence_digest([finding.model_dump(mode="json")])


def test_evidence_that_json_cannot_hold_exactly_is_refused():
    with pytest.raises(ValueError, match="canonical JSON"):
        evidence_digest({"amount": float("nan")})
    with pytest.raises(ValueError, match="canonical JSON"):
        evidence_digest({"big": 2**60})


# -- the local issuer -------------------------------------------------------------------------------------


def test_a_local_proof_verifies_against_the_local_issuers_keys(tmp_path: Path):
    local = LocalIssuer(tmp_path)
    token = local.mint("fin_rev_ana", now=NOW)

    proof = verify_proof(token, trusting(local.issuer_keys(fetched_at=NOW)), person="fin_rev_ana", now=NOW + timedelta(minutes=5))

    assert (proof.issuer, proof.key_id, proof.expires_at) == ("hitl-local", local.kid, NOW + timedelta(hours=1))


def test_the_local_key_id_is_the_rfc7638_thumbprint(tmp_path: Path):
    jwk = LocalIssuer(tmp_path).public_jwk()
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": jwk["x"]}, separators=(",", ":")).encode()

    assert jwk["kid"] == _b64(hashlib.sha256(canonical).digest())
    assert "d" not in jwk


def test_the_local_key_is_kept_private_and_reused(tmp_path: Path):
    first = LocalIssuer(tmp_path).kid

    assert LocalIssuer(tmp_path).kid == first
    key_file = tmp_path / "identity" / "local-issuer.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.parent.stat().st_mode & 0o777 == 0o700


def test_a_corrupt_local_key_file_is_refused_naming_it(tmp_path: Path):
    key_file = tmp_path / "identity" / "local-issuer.pem"
    key_file.parent.mkdir()
    key_file.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")

    with pytest.raises(LocalIssuerError, match=f"{key_file} is not a readable PEM private key"):
        LocalIssuer(tmp_path).mint("fin_rev_ana")


def test_a_foreign_key_in_the_local_key_file_is_refused(tmp_path: Path):
    from cryptography.hazmat.primitives import serialization

    key_file = tmp_path / "identity" / "local-issuer.pem"
    key_file.parent.mkdir()
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    key_file.write_bytes(
        rsa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )

    with pytest.raises(LocalIssuerError, match="not the local issuer's Ed25519 key"):
        LocalIssuer(tmp_path).kid  # noqa: B018


def test_an_unreadable_state_directory_is_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")

    with pytest.raises(LocalIssuerError, match="cannot create the local issuer key"):
        LocalIssuer(blocker).mint("fin_rev_ana")


def test_a_local_proof_cannot_live_longer_than_a_week(tmp_path: Path):
    with pytest.raises(ValueError, match="at most 7 days"):
        LocalIssuer(tmp_path).mint("fin_rev_ana", ttl=timedelta(days=30))


# -- inside the workflow sandbox ----------------------------------------------------------------------


async def test_a_workflow_verifies_a_proof_against_its_own_clock(time_skipping_env, tmp_path: Path):
    """gates.identity (PyJWT, cryptography) imports and runs in the sandbox as the worker sets it up;
    the same token is good when the case starts and expired after the case waited two hours."""
    local = LocalIssuer(tmp_path)
    started = await time_skipping_env.get_current_time()
    token = local.mint("fin_rev_ana", ttl=timedelta(hours=1), now=started - timedelta(minutes=1))
    check = ProofCheck(
        token=token, trust=trusting(local.issuer_keys(fetched_at=started)), person="fin_rev_ana", wait=timedelta(hours=2)
    )
    task_queue = f"identity-{uuid.uuid4()}"

    async with Worker(
        time_skipping_env.client, task_queue=task_queue, workflows=[ProofCheckWorkflow], workflow_runner=WORKFLOW_RUNNER
    ):
        result = await time_skipping_env.client.execute_workflow(
            ProofCheckWorkflow.run, check, id=f"proof-check-{uuid.uuid4()}", task_queue=task_queue, result_type=ProofCheckResult
        )

    assert result.before_waiting == "verified fin_rev_ana"
    assert result.after_waiting.startswith("refused: proof expired at ")
    assert "`hitl token --as fin_rev_ana` (local issuer)" in result.after_waiting
