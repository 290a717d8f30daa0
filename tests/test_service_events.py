"""Event validation: every kind of bad event is rejected whole with its reason."""

import pytest

from service_helpers import JUNK
from streamlearn.service.events import REASONS, Event, Invalid, parse

EXPECTED = ["malformed_json", "malformed_json", "not_object", "bad_key", "missing_x", "bad_x",
            "bad_feature", "bad_feature", "bad_feature", "bad_feature", "bad_feature",
            "bad_target", "bad_target", "malformed_json"]


@pytest.mark.parametrize("raw, reason", list(zip(JUNK, EXPECTED)))
def test_junk_is_rejected_with_its_reason(raw, reason):
    result = parse(raw)
    assert isinstance(result, Invalid)
    assert result.reason == reason
    assert reason in REASONS


def test_valid_events():
    assert parse(b'{"key": "k", "x": {"a": 1, "b": 2.5}, "y": 3}') == \
        Event("k", {"a": 1.0, "b": 2.5}, 3.0)
    assert parse('{"x": {}}') == Event("default", {}, None)
    assert parse(b'{"key": "k", "x": {"a": 1}, "y": null}').y is None
