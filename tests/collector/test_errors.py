"""The one table from the domain's errors to HTTP (`collector.errors.refusal`): each refusal keeps
the status, code and message the contract has always given for it."""

from __future__ import annotations

from collector.body import BodyError
from collector.errors import REFUSALS, CollectorError, refusal
from collector.errors import Refusal as Refused
from collector.incidents import IncidentError
from collector.ingest import BatchError, Refusal
from collector.maintenance import MaintenanceError


def test_each_domain_error_maps_to_its_status_code_and_message() -> None:
    cases: list[tuple[Refused, int, str]] = [
        (IncidentError(409, "conflict", "incident 3 is resolved"), 409, "conflict"),
        (IncidentError(404, "not_found", "no incident 9"), 404, "not_found"),
        (BodyError(415, "bad_encoding", "br is not gzip"), 415, "bad_encoding"),
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
