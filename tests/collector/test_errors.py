"""The one table from the domain's errors to HTTP (`collector.errors.refusal`): each refusal keeps
the status, code and message the contract has always given for it."""

from __future__ import annotations

import re
from pathlib import Path

from collector import body
from collector.body import BodyError
from collector.errors import BODY_REFUSED, REFUSALS, REFUSED, CollectorError, refusal
from collector.errors import Refusal as Refused
from collector.incidents import IncidentConflict, IncidentNotFound
from collector.ingest import BatchError, Refusal
from collector.maintenance import MaintenanceError


def test_each_domain_error_maps_to_its_status_code_and_message() -> None:
    cases: list[tuple[Refused, int, str]] = [
        (IncidentConflict("incident 3 is resolved"), 409, "conflict"),
        (IncidentNotFound("no incident 9"), 404, "not_found"),
        (
            BodyError(415, "unsupported_encoding", "br is not supported"),
            415,
            "unsupported_encoding",
        ),
        (BodyError(400, "bad_encoding", "not valid gzip"), 400, "bad_encoding"),
        (BodyError(400, "bad_json", "the body is not JSON"), 400, "bad_json"),
        (BodyError(413, "too_large", "over 16 bytes"), 413, "too_large"),
        (BodyError(413, "too_many_values", "over 9 values"), 413, "too_many_values"),
        (MaintenanceError("end: before start"), 422, "invalid"),
        (BatchError("results: not a list"), 422, "invalid"),
    ]
    for err, status, code in cases:
        mapped = refusal(err)
        assert (mapped.status, mapped.code, mapped.message) == (status, code, str(err))
        assert mapped.extra == {}
        assert isinstance(err, REFUSALS)


def test_a_refused_batch_names_each_refused_result() -> None:
    err = BatchError(
        "results[1].target: unknown", 1, (Refusal(1, "unknown"), Refusal(4, "too old"))
    )
    mapped = refusal(err)
    assert (mapped.status, mapped.code) == (422, "invalid")
    assert mapped.extra == {
        "index": 1,
        "refused": [{"index": 1, "message": "unknown"}, {"index": 4, "message": "too old"}],
    }


def test_a_collector_error_is_its_own_refusal() -> None:
    err = CollectorError(429, "busy", "wait", headers={"Retry-After": "2"})
    assert refusal(err) is err


def test_every_body_code_body_py_raises_is_in_the_table_with_the_status_it_gave() -> None:
    """BodyError still names a status when raised (collector/body.py); the table must agree."""
    source = (Path(body.__file__)).read_text()
    raised = set(re.findall(r'BodyError\(\s*(\d{3}),\s*"([a-z_]+)"', source))
    assert raised  # the pattern still finds them
    assert {(str(BODY_REFUSED[code]), code) for _, code in raised} == raised


def test_domain_errors_carry_no_http_number() -> None:
    for kind in REFUSED:
        err = kind("what happened")
        assert not hasattr(err, "status")
        assert not hasattr(err, "code")


def test_every_refusal_the_handlers_let_through_has_a_meaning() -> None:
    assert set(REFUSALS) == {CollectorError, BodyError, *REFUSED}
