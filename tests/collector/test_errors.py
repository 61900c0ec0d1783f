"""The one table from the domain's errors to HTTP (`collector.errors.refusal`): each refusal keeps
the status, code and message the contract has always given for it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import get_args

import pytest

from collector.body import BodyCode, BodyError
from collector.errors import BODY_REFUSED, REFUSALS, REFUSED, CollectorError, refusal
from collector.errors import Refusal as Refused
from collector.incidents import IncidentConflict, IncidentNotFound
from collector.ingest import BatchError, Refusal
from collector.maintenance import MaintenanceError
from collector.store import DatabaseSpec, DatabaseUnavailable, Store
from collector.store.database import Connection
from sitewatch.config.files import load_collector_config
from sitewatch.config.model import AgentCredential, ApiToken
from sitewatch.passwords import hash_password
from tests.apps import served
from tests.browser.conftest import PASSWORDS, Dashboard, write_config


def test_each_domain_error_maps_to_its_status_code_and_message() -> None:
    cases: list[tuple[Refused, int, str]] = [
        (IncidentConflict("incident 3 is resolved"), 409, "conflict"),
        (IncidentNotFound("no incident 9"), 404, "not_found"),
        (
            BodyError("unsupported_encoding", "br is not supported"),
            415,
            "unsupported_encoding",
        ),
        (BodyError("bad_encoding", "not valid gzip"), 400, "bad_encoding"),
        (BodyError("bad_json", "the body is not JSON"), 400, "bad_json"),
        (BodyError("too_large", "over 16 bytes"), 413, "too_large"),
        (BodyError("too_many_values", "over 9 values"), 413, "too_many_values"),
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


def test_every_body_code_has_a_status() -> None:
    assert set(get_args(BodyCode)) == set(BODY_REFUSED)


def test_domain_errors_carry_no_http_number() -> None:
    for kind in REFUSED:
        err = kind("what happened")
        assert not hasattr(err, "status")
        assert not hasattr(err, "code")


def test_every_refusal_the_handlers_let_through_has_a_meaning() -> None:
    assert set(REFUSALS) == {CollectorError, BodyError, *REFUSED}


# -- the database unavailable: 503 with Retry-After, never a 500 ------------------------------

AGENT_TOKEN = "tesko-secret"  # noqa: S105 -- a test's own credential
VIEWER_TOKEN = "screen-secret"  # noqa: S105 -- a test's own credential
UNAVAILABLE = {
    "code": "database_unavailable",
    "message": "the database cannot be used just now: try again in 5 seconds",
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Unavailable:
    """Make the store's Database raise DatabaseUnavailable on every read and write while on,
    as it does when the server is down or the file locked past the busy timeout."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = False
        for method in ("reading", "writing"):
            real = getattr(store.db, method)
            monkeypatch.setattr(store.db, method, self._failing(real))

    def _failing(
        self, real: Callable[[], AbstractContextManager[Connection]]
    ) -> Callable[[], AbstractContextManager[Connection]]:
        def method() -> AbstractContextManager[Connection]:
            if self.on:
                raise DatabaseUnavailable("postgresql://watch@db:5432/sw: server closed")
            return real()

        return method


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {name: hash_password(password) for name, password in PASSWORDS.items()}


@pytest.fixture
async def dashboard(
    database_spec: DatabaseSpec, tmp_path: Path, hashes: dict[str, str]
) -> AsyncIterator[Dashboard]:
    """The dashboard's collector on each backend, with an agent and an API token."""
    config = load_collector_config(write_config(tmp_path, hashes))
    config = replace(
        config,
        agents=(AgentCredential("tesko-01", "alpha", sha(AGENT_TOKEN)),),
        api_tokens=(ApiToken("screen", "viewer", sha(VIEWER_TOKEN)),),
    )
    async with served(config, database_spec) as (client, collector):
        yield Dashboard(client, collector)


async def test_the_database_unavailable_is_a_503_with_retry_after_for_api_and_pages(
    dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = dashboard.collector.store
    fault = Unavailable(store, monkeypatch)
    assert await dashboard.login("desk") == 303
    client = dashboard.client
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
    batch: dict[str, object] = {"results": [], "heartbeat": None}
    reads = ("/api/v1/history?target=alpha-mpls", "/api/v1/incidents", "/api/v1/sites")
    for path in reads:
        assert (await client.get(path, headers=viewer)).status == 200, path
    fault.on = True
    for path in reads:
        response = await client.get(path, headers=viewer)
        assert (response.status, await response.json()) == (503, {"error": UNAVAILABLE}), path
        assert response.headers["Retry-After"] == "5"
    response = await client.post(
        "/api/v1/agent/results",
        data=json.dumps(batch),
        headers={"Authorization": f"Bearer {AGENT_TOKEN}"},
    )
    assert (response.status, await response.json()) == (503, {"error": UNAVAILABLE})
    assert response.headers["Retry-After"] == "5"
    for path in ("/incidents", "/reports"):
        response = await client.get(path, allow_redirects=False)
        html = await response.text()
        assert response.status == 503, (path, html)
        assert response.headers["Retry-After"] == "5"
        assert response.content_type == "text/html"
        assert UNAVAILABLE["message"] in html
        assert "watch@db" not in html  # the driver's words stay out of the page
    fault.on = False
    assert (await client.get(reads[0], headers=viewer)).status == 200
