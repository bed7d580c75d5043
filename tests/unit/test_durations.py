"""The one duration parser and formatter (gates/durations.py), in the forms the commands print."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gates.durations import exact_duration, format_duration, parse_duration
from gates.policy import GateLevel


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("4h", timedelta(hours=4)), ("7d", timedelta(days=7)),
     ("2w", timedelta(weeks=2)), ("1h30m", timedelta(hours=1, minutes=30)), (" 1H 30M ", timedelta(hours=1, minutes=30))],
)
def test_durations_parse_as_operators_type_them(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "1.5h", "-5m"])
def test_anything_else_is_refused_with_examples(text):
    with pytest.raises(ValueError, match=r"is not a duration \(use e\.g\. 90s, 15m, 4h, 7d, 1h30m\)"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "compact", "table", "two_largest"),
    [
        (0, "0s", "0s", "0s"),
        (40, "40s", "40s", "40s"),
        (125, "2m5s", "2m", "2m5s"),
        (3600, "1h", "1h", "1h"),
        (3605, "1h", "1h", "1h5s"),
        (5400, "1h30m", "1h 30m", "1h30m"),
        (86400 + 300, "1d", "1d", "1d5m"),
        (2 * 86400 + 3 * 3600 + 59, "2d3h", "2d 3h", "2d3h"),
        (-(23 * 3600 + 59 * 60), "23h59m", "23h 59m", "23h59m"),
    ],
)
def test_a_length_shows_its_largest_unit_and_at_most_one_more(seconds, compact, table, two_largest):
    assert format_duration(seconds) == compact  # hitl ops stuck: "waiting 2d3h past its deadline"
    assert format_duration(seconds, separator=" ", seconds_after_minutes=False) == table  # the inbox
    assert format_duration(seconds, adjacent=False) == two_largest  # why a case timed out


def test_policies_and_options_read_the_same_durations():
    """A policy's `escalate_after` and a command's `--older-than` go through one parser; pydantic's
    own forms (ISO 8601, seconds) still work in policies."""
    level = GateLevel.model_validate({"group": "finance_reviewers", "title": "Deal desk", "remind_after": "1.5h",
                                      "escalate_after": "1d12h"})
    assert (level.remind_after, level.escalate_after) == (parse_duration("90m"), parse_duration("36h"))
    assert GateLevel.model_validate({"group": "g", "title": "t", "remind_after": "PT1H", "escalate_after": 7200}).escalate_after \
        == timedelta(hours=2)


def test_the_timeout_reason_states_the_policy_duration_exactly():
    assert [exact_duration(timedelta(seconds=s)) for s in (90 * 60, 2 * 86400, 45, 25 * 3600, 86400 + 1)] == [
        "90m", "2d", "45s", "25h", "86401s",
    ]
