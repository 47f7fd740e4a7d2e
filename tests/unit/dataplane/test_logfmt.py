"""Log lines: `subsystem.event key=value`, quoted when needed so a line stays one record."""
from __future__ import annotations

import logging

import pytest

from dataplane.logfmt import event, format_event


def test_plain_and_quoted_values() -> None:
    line = format_event("tunnel.reject", {"peer": "10.0.0.1", "reason": 'bad "x" y', "empty": ""})
    assert line == 'tunnel.reject peer=10.0.0.1 reason="bad \\"x\\" y" empty=""'
    assert "\n" not in format_event("a.b", {"v": "one\ntwo"})


def test_event_respects_the_level(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.logfmt")
    with caplog.at_level(logging.INFO, logger="test.logfmt"):
        event(logger, "x.y", level=logging.DEBUG, a=1)
        event(logger, "x.z", a=1)
    assert [r.getMessage() for r in caplog.records] == ["x.z a=1"]
