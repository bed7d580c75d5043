"""Case payloads: what a service sends to start a case, and the case ID it gets."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from gates.cases import (
    KIND_ALIASES,
    REQUEST_MODELS,
    AccessEscalationRequest,
    CaseKind,
    ProcurementRequest,
    RenewalDiscountRequest,
    case_id_for,
)
from tests.unit.factories import access, procurement, renewal


def _error(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(exc.value)


@pytest.mark.parametrize("build", [renewal, procurement, access], ids=["renewal", "procurement", "access"])
def test_a_complete_payload_of_each_kind_validates(build):
    request = build()
    assert REQUEST_MODELS[request.kind] is type(request)


def test_every_kind_has_a_request_model():
    assert set(REQUEST_MODELS) == set(CaseKind)


def test_payload_without_requester_is_refused_naming_the_field():
    fields = renewal().model_dump()
    del fields["requester"]
    with pytest.raises(ValidationError) as exc:
        RenewalDiscountRequest(**fields)
    assert "requester" in _error(exc)
    assert "Field required" in _error(exc)


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_blank_justification_is_refused(blank):
    with pytest.raises(ValidationError) as exc:
        renewal(justification=blank)
    assert "justification" in _error(exc)
    assert "at least 1 character" in _error(exc)


@pytest.mark.parametrize("pct", ["100", "100.00", "150"])
def test_discount_of_100_percent_or_more_is_refused(pct):
    with pytest.raises(ValidationError) as exc:
        renewal(requested_discount_pct=Decimal(pct))
    assert "requested_discount_pct" in _error(exc)
    assert "less than 100" in _error(exc)


@pytest.mark.parametrize("pct", ["0", "-5"])
def test_discount_of_zero_or_less_is_refused(pct):
    with pytest.raises(ValidationError) as exc:
        renewal(requested_discount_pct=Decimal(pct))
    assert "requested_discount_pct" in _error(exc)
    assert "greater than 0" in _error(exc)


def test_discount_just_under_100_is_accepted():
    assert renewal(requested_discount_pct=Decimal("99.99")).requested_discount_pct == Decimal("99.99")


@pytest.mark.parametrize("currency", ["usd", "US", "USDT", "$", "U5D"])
def test_currency_that_is_not_a_three_letter_iso_code_is_refused(currency):
    with pytest.raises(ValidationError) as exc:
        procurement(currency=currency)
    assert "currency" in _error(exc)


def test_non_usd_iso_currency_is_accepted_as_sent():
    assert procurement(currency="EUR").currency == "EUR"


@pytest.mark.parametrize("build", [renewal, procurement, access], ids=["renewal", "procurement", "access"])
def test_unknown_extra_field_is_refused(build):
    with pytest.raises(ValidationError) as exc:
        build(priority="urgent")
    assert "priority" in _error(exc)
    assert "Extra inputs are not permitted" in _error(exc)


@pytest.mark.parametrize(
    ("build", "field", "value"),
    [
        (renewal, "account", "Acme_Enterprise"),
        (renewal, "renewal", "FY26"),
        (procurement, "vendor", "Northwind"),
        (procurement, "cost_centre", "CC-ENG"),
        (access, "system", "Billing-DB"),
        (access, "subject_user", "Lee.Eng"),
    ],
)
def test_uppercase_identifiers_are_refused(build, field, value):
    with pytest.raises(ValidationError) as exc:
        build(**{field: value})
    assert field in _error(exc)
    assert "should match pattern" in _error(exc)


def test_requester_with_spaces_is_refused():
    with pytest.raises(ValidationError) as exc:
        renewal(requester="sam sales")
    assert "requester" in _error(exc)


def test_access_duration_over_a_year_is_refused():
    with pytest.raises(ValidationError) as exc:
        access(duration_days=366)
    assert "duration_days" in _error(exc)


def test_payload_is_immutable_once_built():
    request = renewal()
    with pytest.raises(ValidationError):
        request.account = "globex"  # type: ignore[misc]


# --- case IDs --------------------------------------------------------------------------------


def test_renewal_case_id_is_kind_and_account_and_renewal():
    assert renewal().case_id() == "renewal_discount_exception:acme_enterprise/fy26"


def test_procurement_case_id_is_kind_and_vendor_and_request_number():
    assert procurement().case_id() == "procurement_threshold_breach:northwind/pr-2026-0142"


def test_access_case_id_is_kind_and_user_system_entitlement():
    assert access().case_id() == "access_escalation:lee.eng/billing-db/read_replica"


def test_same_business_key_gives_the_same_case_id_whatever_else_differs():
    first = renewal(requested_discount_pct=Decimal("28"), justification="first try", requester="sam.sales")
    second = renewal(requested_discount_pct=Decimal("35"), justification="second try", requester="ana.sales")
    assert first.case_id() == second.case_id()


def test_different_business_keys_give_different_case_ids():
    assert renewal(renewal="fy26").case_id() != renewal(renewal="fy27").case_id()
    assert renewal(account="acme_enterprise").case_id() != renewal(account="globex").case_id()


def test_same_business_key_in_different_kinds_gives_different_case_ids():
    # A renewal of account "x" for period "y" and a purchase "y" from vendor "x" share the key "x/y".
    as_renewal = renewal(account="x", renewal="y")
    as_purchase = procurement(vendor="x", request_id="y")
    assert as_renewal.business_key() == as_purchase.business_key() == "x/y"
    assert as_renewal.case_id() != as_purchase.case_id()


def test_whitespace_around_identifiers_does_not_change_the_case_id():
    assert renewal(account="  acme_enterprise ").case_id() == renewal().case_id()


def test_case_id_replaces_characters_unsafe_in_workflow_ids():
    assert case_id_for(CaseKind.RENEWAL, "Acme Corp/FY26") == "renewal_discount_exception:acme-corp/fy26"


# --- kind aliases ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "kind", "model"),
    [
        ("renewal", CaseKind.RENEWAL, RenewalDiscountRequest),
        ("procurement", CaseKind.PROCUREMENT, ProcurementRequest),
        ("access", CaseKind.ACCESS, AccessEscalationRequest),
    ],
)
def test_short_kind_names_map_to_the_kind_and_its_model(alias, kind, model):
    assert KIND_ALIASES[alias] is kind
    assert REQUEST_MODELS[KIND_ALIASES[alias]] is model


@pytest.mark.parametrize("kind", list(CaseKind))
def test_full_kind_names_are_accepted_as_aliases_too(kind):
    assert KIND_ALIASES[kind.value] is kind
