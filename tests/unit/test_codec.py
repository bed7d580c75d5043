"""The payload codec: what goes into Temporal is ciphertext naming its key, comes back as it went in,
survives a key rotation, and refuses (in one line naming the key id, never the key) what it cannot trust."""

from __future__ import annotations

import base64
import json
import os

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from demo.examples import example
from gates.cases import CaseKind
from hitl_temporal.codec import (
    ENCODING,
    KEY_ID_METADATA,
    CodecKeyError,
    EncryptionCodec,
    KeyRing,
    NoKeysCodec,
    PayloadDecryptError,
    encrypted_converter,
    new_key,
)
from workers.client import payload_codec, worker_data_converter
from workers.config import Settings
from workers.devstack import temporal_dev_server_argv

KEY_A = new_key()
KEY_B = new_key()


def _json_payload(value: object) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


async def test_a_payload_is_stored_encrypted_under_the_current_key_and_decodes_to_what_was_sent():
    codec = EncryptionCodec(KeyRing.parse(f"a:{KEY_A},b:{KEY_B}"))
    original = _json_payload({"account": "acme_enterprise", "requested_discount_pct": 28})

    [stored] = await codec.encode([original])

    assert stored.metadata["encoding"] == ENCODING
    assert stored.metadata[KEY_ID_METADATA] == b"a"
    assert b"acme_enterprise" not in stored.SerializeToString()
    assert b"json/plain" not in stored.SerializeToString()  # the inner encoding is hidden too
    assert await codec.decode([stored]) == [original]


async def test_the_same_payload_encrypts_differently_each_time():
    codec = EncryptionCodec(KeyRing.parse(f"a:{KEY_A}"))
    first, second = await codec.encode([_json_payload("same"), _json_payload("same")])
    assert first.data[:12] != second.data[:12]  # a fresh nonce
    assert first.data != second.data


async def test_after_a_rotation_old_payloads_still_decode_and_new_ones_use_the_new_key():
    before = EncryptionCodec(KeyRing.parse(f"a:{KEY_A}"))
    [old] = await before.encode([_json_payload({"decided": "approve"})])

    after = EncryptionCodec(KeyRing.parse(f"b:{KEY_B},a:{KEY_A}"))  # b is current now, a kept to decrypt
    [new] = await after.encode([_json_payload({"decided": "reject"})])

    assert new.metadata[KEY_ID_METADATA] == b"b"
    assert await after.decode([old, new]) == [_json_payload({"decided": "approve"}), _json_payload({"decided": "reject"})]


async def test_a_payload_under_a_key_that_was_dropped_fails_naming_the_key_id_only():
    [old] = await EncryptionCodec(KeyRing.parse(f"a:{KEY_A}")).encode([_json_payload("x")])
    with pytest.raises(PayloadDecryptError) as raised:
        await EncryptionCodec(KeyRing.parse(f"b:{KEY_B}")).decode([old])
    message = str(raised.value)
    assert "'a'" in message and "not among the keys configured (b)" in message
    assert "\n" not in message and KEY_A not in message and KEY_B not in message


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
async def test_an_altered_payload_is_refused(where: str):
    codec = EncryptionCodec(KeyRing.parse(f"a:{KEY_A}"))
    [stored] = await codec.encode([_json_payload({"outcome": "approve"})])
    data = bytearray(stored.data)
    data[{"nonce": 0, "ciphertext": 14, "tag": -1}[where]] ^= 0x01
    tampered = Payload(metadata=dict(stored.metadata), data=bytes(data))
    with pytest.raises(PayloadDecryptError, match=r"^payload encrypted with key 'a' does not authenticate: it was altered"):
        await codec.decode([tampered])


async def test_a_payload_relabelled_with_another_key_id_is_refused():
    """Both keys are known: the ciphertext is bound to the id it was written under."""
    codec = EncryptionCodec(KeyRing.parse(f"a:{KEY_A},b:{KEY_B}"))
    [stored] = await codec.encode([_json_payload("x")])
    relabelled = Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: b"b"}, data=stored.data)
    with pytest.raises(PayloadDecryptError, match="key 'b' does not authenticate"):
        await codec.decode([relabelled])


async def test_the_same_key_under_another_id_decrypts_nothing():
    [stored] = await EncryptionCodec(KeyRing.parse(f"a:{KEY_A}")).encode([_json_payload("x")])
    wrong = EncryptionCodec(KeyRing.parse(f"a:{KEY_B}"))  # id a, but a different key
    with pytest.raises(PayloadDecryptError, match="key 'a' does not authenticate"):
        await wrong.decode([stored])


async def test_truncated_and_unlabelled_encrypted_payloads_are_refused():
    codec = EncryptionCodec(KeyRing.parse(f"a:{KEY_A}"))
    with pytest.raises(PayloadDecryptError, match=r"key 'a' is truncated \(5 bytes\)"):
        await codec.decode([Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: b"a"}, data=b"short")])
    with pytest.raises(PayloadDecryptError, match="names no key"):
        await codec.decode([Payload(metadata={"encoding": ENCODING}, data=os.urandom(64))])


async def test_plain_payloads_decode_unchanged():
    """Histories from before encryption was on, and input from tools that send plain JSON."""
    codec = EncryptionCodec(KeyRing.parse(f"a:{KEY_A}"))
    plain = [_json_payload({"outcome": "approve"}), Payload(metadata={"encoding": b"binary/null"})]
    assert await codec.decode(plain) == plain


async def test_a_case_request_round_trips_through_the_encrypting_converter():
    converter = encrypted_converter(pydantic_data_converter, KeyRing.parse(f"a:{KEY_A}"))
    request = example(CaseKind.RENEWAL, human=True)
    [stored] = await converter.encode([request])
    assert stored.metadata["encoding"] == ENCODING and request.account.encode() not in stored.data
    assert await converter.decode([stored], [type(request)]) == [request]


def test_no_codec_leaves_the_converter_as_it_is():
    assert encrypted_converter(pydantic_data_converter, None) is pydantic_data_converter


def test_the_key_ring_never_shows_its_keys():
    ring = KeyRing.parse(f"a:{KEY_A},b:{KEY_B}")
    assert (ring.current, list(ring.keys)) == ("a", ["a", "b"])
    assert KEY_A not in repr(ring) and KEY_A not in str(ring)
    assert repr(ring) == "KeyRing(current='a', ids=['a', 'b'])"


def test_entries_may_be_spaced():
    assert list(KeyRing.parse(f" a : {KEY_A} , b:{KEY_B} ").keys) == ["a", "b"]


SHORT_KEY = base64.b64encode(os.urandom(16)).decode()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "is empty; give id:<base64 of 32 bytes>"),
        ("   ", "is empty; give id:<base64 of 32 bytes>"),
        (f"a:{KEY_A},", "entry 2 is not id:<base64 of 32 bytes>"),
        (f"a:{KEY_A},,b:{KEY_B}", "entry 2 is not id:<base64 of 32 bytes>"),
        (KEY_A, "entry 1 is not id:<base64 of 32 bytes>"),
        (f":{KEY_A}", "entry 1 is not id:<base64 of 32 bytes>"),
        ("a:", "entry 1 is not id:<base64 of 32 bytes>"),
        (f"a b:{KEY_A}", "entry 1: the key id is not a plain name"),
        (f"{'k' * 65}:{KEY_A}", "entry 1: the key id is not a plain name"),
        ("a:not*base64!", "key 'a' is not valid base64"),
        (f"a:{KEY_A[:-2]}", "key 'a' is not valid base64"),  # padding cut off
        (f"a:{SHORT_KEY}", "key 'a' is 16 bytes; AES-256 needs 32 (openssl rand -base64 32)"),
        (f"a:{KEY_A},a:{KEY_B}", "key id 'a' is given twice"),
        (",".join(f"k{i}:{KEY_A}" for i in range(33)), "names 33 keys; at most 32"),
    ],
)
def test_a_bad_key_ring_is_refused_in_one_line_without_the_keys(value: str, message: str):
    with pytest.raises(CodecKeyError) as raised:
        KeyRing.parse(value)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value) and KEY_A not in str(raised.value) and KEY_B not in str(raised.value)


def test_hitl_codec_keys_is_read_and_validated_at_start_up(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HITL_CODEC_KEYS", f"k2:{KEY_B},k1:{KEY_A}")
    codec = payload_codec(Settings(_env_file=None))
    assert codec is not None and codec.ring.current == "k2" and list(codec.ring.keys) == ["k2", "k1"]
    assert KEY_B not in repr(Settings(_env_file=None))  # a secret: never shown

    monkeypatch.setenv("HITL_CODEC_KEYS", f"k1:{KEY_A},k1:{KEY_B}")
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    [error] = raised.value.errors()
    assert error["loc"] == ("codec_keys",)
    assert error["msg"] == "Value error, key id 'k1' is given twice"


def test_without_hitl_codec_keys_there_is_no_codec(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HITL_CODEC_KEYS", raising=False)
    assert payload_codec(Settings(_env_file=None)) is None


def test_hitl_codec_keys_set_but_empty_is_an_error_not_plain_payloads(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HITL_CODEC_KEYS", "")
    with pytest.raises(ValidationError, match="is empty; give id:<base64 of 32 bytes>"):
        Settings(_env_file=None)


async def test_a_worker_hands_an_undecryptable_payload_on_for_the_workflow_to_refuse():
    """A signal anyone can send must not fail the workflow task on every replay (a wedged case)."""
    worker_codec = EncryptionCodec(KeyRing.parse(f"a:{KEY_A}")).for_worker()
    [foreign] = await EncryptionCodec(KeyRing.parse(f"x:{KEY_B}")).encode([_json_payload({"outcome": "approve"})])
    [own] = await worker_codec.encode([_json_payload({"outcome": "reject"})])

    decoded_foreign, decoded_own = await worker_codec.decode([foreign, own])

    assert decoded_foreign == foreign  # still ciphertext: the guard refuses it as not JSON
    assert decoded_own == _json_payload({"outcome": "reject"})
    with pytest.raises(PayloadDecryptError):  # clients stay strict: a user is told
        await EncryptionCodec(KeyRing.parse(f"a:{KEY_A}")).decode([foreign])


async def test_a_client_without_keys_says_the_case_is_encrypted_and_passes_plain_payloads():
    [stored] = await EncryptionCodec(KeyRing.parse(f"k7:{KEY_A}")).encode([_json_payload("x")])
    plain = _json_payload({"outcome": "approve"})
    assert await NoKeysCodec().decode([plain]) == [plain]
    assert await NoKeysCodec().encode([plain]) == [plain]
    with pytest.raises(PayloadDecryptError) as raised:
        await NoKeysCodec().decode([plain, stored])
    assert str(raised.value) == "the case data is encrypted (key 'k7') and no keys are configured: set HITL_CODEC_KEYS"


def test_workers_get_the_lenient_codec_and_no_codec_without_keys():
    strict = EncryptionCodec(KeyRing.parse(f"a:{KEY_A}"))
    worker_codec = worker_data_converter(strict).payload_codec
    assert isinstance(worker_codec, EncryptionCodec) and worker_codec.lenient and worker_codec.ring is strict.ring
    assert worker_data_converter(NoKeysCodec()).payload_codec is None
    assert worker_data_converter(None).payload_codec is None


def test_the_dev_server_ui_gets_the_codec_endpoint_only_when_there_is_a_ui(tmp_path):
    endpoint = "http://127.0.0.1:8234"
    with_ui = temporal_dev_server_argv(tmp_path / "t.db", 7233, 8233, ui_codec_endpoint=endpoint)
    assert with_ui[with_ui.index("--ui-codec-endpoint") + 1] == endpoint
    assert "--ui-codec-endpoint" not in temporal_dev_server_argv(tmp_path / "t.db", 7233, None, ui_codec_endpoint=endpoint)
    assert "--ui-codec-endpoint" not in temporal_dev_server_argv(tmp_path / "t.db", 7233, 8233)
