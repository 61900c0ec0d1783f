"""SIP OPTIONS against real sipp on loopback, and the message code under hypothesis."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes import sip
from probes.result import ProbeResult
from probes.target import Target
from sitewatch.config.model import SipProbe
from tests.lab.responders import SCENARIO

SCENARIO_404 = SCENARIO.replace("SIP/2.0 200 OK", "SIP/2.0 404 Not Here")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def until(check: Callable[[], object], timeout: float = 10.0) -> ProbeResult:
    """Probe until the result is ok, or fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()  # type: ignore[misc]
        assert isinstance(result, ProbeResult)
        if result.ok or loop.time() > deadline:
            return result


def bound_by(pid: int, port: int, kind: int) -> bool:
    """Whether process `pid` itself holds 127.0.0.1:`port`, not merely whether someone does."""
    table = Path("/proc/net/udp" if kind == socket.SOCK_DGRAM else "/proc/net/tcp")
    address = int.from_bytes(socket.inet_aton("127.0.0.1"), sys.byteorder)  # as the kernel prints
    wanted = f"{address:08X}:{port:04X}"
    inodes = {
        row.split()[9] for row in table.read_text().splitlines()[1:] if row.split()[1] == wanted
    }
    try:
        links = {str(fd.readlink()) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(f"socket:[{inode}]" in links for inode in inodes)


@pytest.fixture
async def sipp(tmp_path: Path) -> AsyncIterator[Callable[[str, str], Awaitable[int]]]:
    """Start sipp answering with a scenario; return its port once sipp holds it.

    The port is picked free and then handed to sipp, so another process may take it in
    between; sipp then exits at start (with its statistics, not a reason). So an early exit is
    retried on a new port, and the third fails the test with sipp's output rather than as a
    probe refused ten seconds on.
    """
    if shutil.which("sipp") is None:
        if os.environ.get("CI"):
            pytest.fail("sipp (Debian's sip-tester) is missing; CI must run this test")
        pytest.skip("sipp (Debian's sip-tester) is not installed")
    processes: list[asyncio.subprocess.Process] = []

    async def start(scenario: str, transport: str = "u1") -> int:
        path = tmp_path / f"scenario-{len(processes)}.xml"
        path.write_text(scenario)
        kind = socket.SOCK_DGRAM if transport == "u1" else socket.SOCK_STREAM
        for _ in range(3):
            port = free_port(kind)
            log = tmp_path / f"sipp-{len(processes)}.log"
            with log.open("wb") as output:
                process = await asyncio.create_subprocess_exec(
                    "sipp",
                    "-sf",
                    str(path),
                    "-t",
                    transport,
                    "-i",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-nostdin",
                    "-nd",
                    "-max_recv_loops",
                    "1000",
                    cwd=tmp_path,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            processes.append(process)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while process.returncode is None and not bound_by(process.pid, port, kind):
                if loop.time() > deadline:
                    pytest.fail(
                        f"sipp did not bind 127.0.0.1:{port} within 10 s: {log.read_text()}"
                    )
                await asyncio.sleep(0.02)  # polling interval of a condition wait
            if process.returncode is None:
                return port
        pytest.fail(
            f"sipp exited at start 3 times, last with {process.returncode}: "
            f"{log.read_text()[-2000:]}"
        )

    yield start
    for process in processes:
        if process.returncode is None:
            process.terminate()
        async with asyncio.timeout(10):
            await process.wait()


async def test_a_phone_answering_200(sipp: Callable[[str, str], Awaitable[int]]) -> None:
    port = await sipp(SCENARIO, "u1")
    target = Target("127.0.0.1", SipProbe(port=port, transport="udp"), id="cc-phone-01")
    result = await until(lambda: sip.probe(target, timeout=1))
    assert result.ok, result.detail
    assert result.value["status"] == 200
    assert result.target == "cc-phone-01"
    assert result.rtt_ms is not None


async def test_any_final_response_means_alive(sipp: Callable[[str, str], Awaitable[int]]) -> None:
    port = await sipp(SCENARIO_404, "u1")
    target = Target("127.0.0.1", SipProbe(port=port, transport="udp"))
    result = await until(lambda: sip.probe(target, timeout=1))
    assert result.ok, result.detail
    assert (result.value["status"], result.value["reason"]) == (404, "Not Here")


async def test_over_tcp(sipp: Callable[[str, str], Awaitable[int]]) -> None:
    port = await sipp(SCENARIO, "t1")
    target = Target("127.0.0.1", SipProbe(port=port, transport="tcp"))
    result = await until(lambda: sip.probe(target, timeout=1))
    assert result.ok, result.detail
    assert result.value["status"] == 200


async def test_nothing_listening_is_refused() -> None:
    transports: tuple[Literal["udp", "tcp"], ...] = ("udp", "tcp")
    for transport in transports:
        target = Target("127.0.0.1", SipProbe(port=free_port(), transport=transport))
        result = await sip.probe(target, timeout=2)
        assert (result.ok, result.error_kind) == (False, "refused"), transport


async def test_a_silent_phone_times_out_after_retransmitting() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        target = Target("127.0.0.1", SipProbe(port=port, transport="udp"))
        result = await sip.probe(target, timeout=1.2)
        silent.setblocking(False)
        received = 0
        while True:
            try:
                silent.recv(65535)
            except BlockingIOError:
                break
            received += 1
    assert (result.ok, result.error_kind) == (False, "timeout")
    assert received == 2  # the request, and timer E's retransmission at 500 ms


async def test_garbage_replies_are_a_protocol_failure() -> None:
    class Garbage(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(b"\x00\xffnot SIP at all", addr)  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Garbage, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        target = Target("127.0.0.1", SipProbe(port=port, transport="udp"))
        result = await sip.probe(target, timeout=0.8)
    finally:
        transport.close()
    assert (result.ok, result.error_kind) == (False, "protocol")
    assert "malformed" in result.detail


TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=30)


@given(
    call_id=TOKENS,
    tag=TOKENS,
    branch=TOKENS,
    address=st.ip_addresses(v=4).map(str),
    port=st.integers(1, 65535),
    transport=st.sampled_from(["udp", "tcp"]),
)
def test_options_round_trip(
    *, call_id: str, tag: str, branch: str, address: str, port: int, transport: str
) -> None:
    data = sip.build_options(
        address=address,
        port=port,
        transport=transport,
        local=("10.99.0.1", 5062),
        call_id=call_id,
        tag=tag,
        branch=f"z9hG4bK{branch}",
    )
    request = sip.parse_request(data)
    assert request is not None
    assert (request.method, request.uri) == ("OPTIONS", f"sip:{address}:{port}")
    assert request.headers["call-id"] == call_id
    assert request.headers["cseq"] == "1 OPTIONS"
    assert f"branch=z9hG4bK{branch};" in request.headers["via"]
    assert f"tag={tag}" in request.headers["from"]
    reply = (
        f"SIP/2.0 200 OK\r\nv: {request.headers['via']}\r\nf: {request.headers['from']}\r\n"
        f"t: {request.headers['to']};tag=x\r\ni: {call_id}\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
    ).encode()
    response = sip.parse_response(reply)
    assert response is not None
    assert sip.matches(response, call_id)
    assert not sip.matches(response, call_id + "x")


@given(st.binary(max_size=400))
def test_random_bytes_never_break_the_parsers(data: bytes) -> None:
    response = sip.parse_response(data)
    assert response is None or 100 <= response.status <= 699
    sip.parse_request(data)


@given(st.binary(max_size=60), st.integers(0, 200))
def test_mutated_responses_never_break_the_parser(noise: bytes, cut: int) -> None:
    good = b"SIP/2.0 200 OK\r\nCall-ID: a@b\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    for data in (good[:cut], good[:cut] + noise + good[cut:], noise + good):
        sip.parse_response(data)
