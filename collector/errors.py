"""The collector's one error model: domain errors say what happened; one table says what each
means in HTTP, and the API and the dashboard each apply it once.

    CollectorError(status, code, message)   a refusal in HTTP terms: the table's output, and
    └── PageError (dashboard.auth)          what the HTTP layers raise themselves

The domain's own exceptions stay in their modules and carry no HTTP number: `IncidentNotFound`
and `IncidentConflict` (a staff action on a missing incident, or one in the wrong state),
`IncidentChanged` (another collector changed the incident during the action, twice),
`MaintenanceError` (a window refused), `BodyError` (a body too large or not JSON; its code says
which), `BatchError` (an agent's batch refused), and the store's `DatabaseUnavailable` (the
database cannot be reached or used just now: a 503 with Retry-After, never a 500). `refusal`
turns each into a CollectorError by REFUSED, so the API's `errors` middleware and the
dashboard's page guard each map them once, and no handler catches them to translate them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from collector.body import BodyCode, BodyError
from collector.incidents import IncidentConflict, IncidentNotFound
from collector.ingest import BatchError
from collector.maintenance import MaintenanceError
from collector.store.database import DatabaseUnavailable
from collector.store.incidents import IncidentChanged


class CollectorError(Exception):
    """An expected refusal: its status, a stable code, a message for people, extra headers.

    `extra` adds fields beside `code` and `message` in the error body (a batch's `refused`).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra
        self.headers = headers or {}


def _changed(err: Exception) -> str:
    return f"{err}: another collector changed it at the same moment; look again and retry"


RETRY_AFTER = 5  # seconds a client is asked to wait when the database cannot be used


def _unavailable(_: Exception) -> str:
    """Say what a client can do: the driver's words (a host, a file) are not for it, and
    /healthz says why."""
    return f"the database cannot be used just now: try again in {RETRY_AFTER} seconds"


def _batch(err: Exception) -> dict[str, Any]:
    """A refused batch names its first refused result, and each of them."""
    if not isinstance(err, BatchError) or err.index is None:
        return {}
    return {
        "index": err.index,  # the first: what agents before "refused" read
        "refused": [{"index": r.index, "message": r.message} for r in err.refused],
    }


class Mapped:
    """One row of the table: a domain error's status and code, and how its body is worded."""

    def __init__(
        self,
        status: int,
        code: str,
        *,
        message: Callable[[Exception], str] = str,
        fields: Callable[[Exception], dict[str, Any]] = lambda _: {},
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status, self.code, self.message, self.fields = status, code, message, fields
        self.headers = headers or {}


# The one table from the domain's errors to HTTP. A class not listed is looked up by its bases.
REFUSED: dict[type[Exception], Mapped] = {
    IncidentNotFound: Mapped(404, "not_found"),
    IncidentConflict: Mapped(409, "conflict"),
    IncidentChanged: Mapped(409, "conflict", message=_changed),
    MaintenanceError: Mapped(422, "invalid"),
    BatchError: Mapped(422, "invalid", fields=_batch),
    DatabaseUnavailable: Mapped(
        503,
        "database_unavailable",
        message=_unavailable,
        headers={"Retry-After": str(RETRY_AFTER)},
    ),
}

# A refused body's code says what was wrong with it; its status follows from that.
BODY_REFUSED: dict[BodyCode, int] = {
    "too_large": 413,
    "too_many_values": 413,
    "unsupported_encoding": 415,
    "bad_encoding": 400,
    "bad_json": 400,
}

# What handlers let propagate for `refusal` to map; anything else is a bug (a 500).
Refusal = (
    CollectorError
    | BodyError
    | IncidentNotFound
    | IncidentConflict
    | IncidentChanged
    | MaintenanceError
    | BatchError
    | DatabaseUnavailable
)
REFUSALS = (
    CollectorError,
    BodyError,
    IncidentNotFound,
    IncidentConflict,
    IncidentChanged,
    MaintenanceError,
    BatchError,
    DatabaseUnavailable,
)


def refusal(err: Refusal) -> CollectorError:
    """Return the refusal an error means, by the table."""
    if isinstance(err, CollectorError):
        return err
    if isinstance(err, BodyError):
        return CollectorError(BODY_REFUSED[err.code], err.code, err.message)
    for kind in type(err).__mro__:
        if kind in REFUSED:
            row = REFUSED[kind]
            return CollectorError(
                row.status, row.code, row.message(err), headers=dict(row.headers), **row.fields(err)
            )
    raise TypeError(f"no HTTP meaning for {type(err).__name__}: add it to REFUSED") from err
