"""HTTP(S): status, time to the response headers, expected content, days of certificate left.

Each probe opens a fresh connection, so the time measured includes connect and TLS handshake,
the cost a user pays, and no pooled socket outlives the probe.
"""

from __future__ import annotations

import ssl
import time
from datetime import datetime
from typing import Any

import aiohttp

from probes.result import ErrorKind, JsonValue, ProbeResult, failed, now, short
from probes.target import Target
from probes.tcp import classify
from sitewatch import __version__
from sitewatch.config.model import HttpProbe

MAX_BODY = 2**20  # bytes read when looking for expect_body
USER_AGENT = f"SiteWatch/{__version__}"


async def probe(target: Target, *, timeout: float) -> ProbeResult:
    """GET the spec's URL once and judge the answer."""
    spec = target.spec
    if not isinstance(spec, HttpProbe):
        raise TypeError(f"http probe given a {spec.kind} spec")
    started = now()
    try:
        context = _tls_context(spec)
    except (OSError, ssl.SSLError) as err:
        return _failed(target, started, "tls", f"cannot load ca_file {spec.ca_file}: {err}")
    connector = aiohttp.TCPConnector(ssl=context, force_close=True, limit=1)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"User-Agent": USER_AGENT},
    )
    begin = time.perf_counter()
    try:
        async with session, session.get(spec.url, allow_redirects=False) as response:
            rtt_ms = round((time.perf_counter() - begin) * 1000, 3)
            value: dict[str, JsonValue] = {"status": response.status, "url": spec.url}
            body = await response.content.read(MAX_BODY) if spec.expect_body else b""
    except (TimeoutError, aiohttp.ServerTimeoutError):
        return _failed(target, started, "timeout", f"no answer in {timeout:g}s")
    except aiohttp.ClientConnectorCertificateError as err:
        return _failed(target, started, "tls", f"certificate: {err.certificate_error}")
    except aiohttp.ClientSSLError as err:
        return _failed(target, started, "tls", f"TLS: {err.os_error}")
    except aiohttp.ClientConnectorError as err:
        kind, detail = classify(err.os_error)
        return _failed(target, started, kind, detail)
    except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError) as err:
        return _failed(target, started, "protocol", f"bad HTTP answer: {err}")
    except aiohttp.ServerDisconnectedError:
        return _failed(target, started, "protocol", "the server closed the connection")
    except aiohttp.InvalidURL as err:
        return _failed(target, started, "protocol", f"invalid URL {err}")
    except aiohttp.ClientOSError as err:
        kind, detail = classify(err)
        return _failed(target, started, kind, detail)
    days_left = _certificate_days_left(context)
    if days_left is not None:
        value["cert_days_left"] = days_left
    problem = _judge(spec, response.status, body)
    if problem:
        return ProbeResult(
            target.name, "http", started, ok=False, rtt_ms=rtt_ms, value=value,
            error_kind="unexpected", detail=short(problem),
        )  # fmt: skip
    return ProbeResult(target.name, "http", started, ok=True, rtt_ms=rtt_ms, value=value)


def _judge(spec: HttpProbe, status: int, body: bytes) -> str:
    """Return what is wrong with an answer, or nothing."""
    if spec.expect_status is not None and status != spec.expect_status:
        return f"status {status}, expected {spec.expect_status}"
    if spec.expect_status is None and status >= 400:
        return f"status {status}"
    if spec.expect_body and spec.expect_body.encode() not in body:
        return f"the body does not contain {spec.expect_body!r}"
    return ""


class _RecordingContext(ssl.SSLContext):
    """An SSL context that remembers the TLS objects it made, to read the peer's certificate.

    aiohttp releases the connection, and with it the transport, as soon as a short answer is
    read; the SSLObject outlives it and still knows the certificate the server presented.
    """

    made: list[ssl.SSLObject]

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        ssl_object = super().wrap_bio(*args, **kwargs)
        self.made.append(ssl_object)
        return ssl_object


def _tls_context(spec: HttpProbe) -> _RecordingContext | bool:
    if not spec.url.startswith("https://"):
        return False
    context = _RecordingContext(ssl.PROTOCOL_TLS_CLIENT)
    context.made = []
    if spec.verify_tls:
        context.load_verify_locations(cafile=str(spec.ca_file)) if spec.ca_file else (
            context.load_default_certs()
        )
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _certificate_days_left(context: _RecordingContext | bool) -> float | None:
    """Return the days until the server's certificate expires (verified connections only)."""
    if not isinstance(context, _RecordingContext) or not context.made:
        return None
    try:
        certificate = context.made[-1].getpeercert()
    except ValueError:  # the handshake never finished
        return None
    not_after = certificate.get("notAfter") if certificate else None
    if not isinstance(not_after, str):
        return None
    return round((ssl.cert_time_to_seconds(not_after) - time.time()) / 86400, 2)


def _failed(target: Target, started: datetime, kind: ErrorKind, detail: str) -> ProbeResult:
    return failed(target.name, "http", started, kind, detail)


__all__ = ["probe"]
