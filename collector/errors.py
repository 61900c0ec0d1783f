"""The collector's one error model: a refusal carries its HTTP status, and is mapped once.

    CollectorError(status, code, message)   an expected refusal of a request: 4xx, a stable code
    └── PageError (dashboard.auth)          the same with a short title for the error page

The domain's own exceptions stay in their modules and say nothing of HTTP in their logic:
`IncidentError` (a staff action on a missing or closed incident), `MaintenanceError` (a window
refused), `BodyError` (a body too large or not JSON), `BatchError` (an agent's batch refused).
`refusal` turns each into a CollectorError in one table, so the API's `errors` middleware and
the dashboard's page guard each map them once, and no handler catches them to translate them.
"""

from __future__ import annotations

from typing import Any

from collector.body import BodyError
from collector.incidents import IncidentError
from collector.ingest import BatchError
from collector.maintenance import MaintenanceError


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


# What handlers let propagate for `refusal` to map; anything else is a bug (a 500).
Refusal = CollectorError | IncidentError | MaintenanceError | BodyError | BatchError
REFUSALS = (CollectorError, IncidentError, MaintenanceError, BodyError, BatchError)


def refusal(err: Refusal) -> CollectorError:
    """Return the refusal an error means: the one table from domain errors to HTTP."""
    if isinstance(err, CollectorError):
        return err
    if isinstance(err, IncidentError):  # 404 not_found, 409 conflict: it carries them
        return CollectorError(err.status, err.code, str(err))
    if isinstance(err, BodyError):  # 413, 415, 400 bad_encoding, 400 bad_json
        return CollectorError(err.status, err.code, err.message)
    if isinstance(err, MaintenanceError):
        return CollectorError(422, "invalid", str(err))
    extra: dict[str, Any] = {}  # a BatchError
    if err.index is not None:
        extra["index"] = err.index  # the first: what agents before "refused" read
        extra["refused"] = [{"index": r.index, "message": r.message} for r in err.refused]
    return CollectorError(422, "invalid", str(err), **extra)
