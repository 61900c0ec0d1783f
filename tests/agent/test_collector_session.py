"""The agent's HTTP client: connections dropped before the collector drops them, and a POST
sent again at once when the collector closed the pooled connection under it.

The server here is a real socket on loopback that closes a kept-alive connection just as the
agent sends its next batch on it, which is what a collector whose keep-alive ran out does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from agent.main import COLLECTOR_KEEPALIVE, KEEPALIVE, collector_session
from collector.front import FrontLimits

DEADLINE = 20.0


def test_the_agent_drops_idle_connections_before_the_collector_does() -> None:
    assert FrontLimits().keepalive == COLLECTOR_KEEPALIVE
    assert FrontLimits().keepalive > KEEPALIVE


async def test_the_session_uses_the_shorter_keepalive() -> None:
    async with collector_session("token") as session:
        connector = session.connector
        assert isinstance(connector, aiohttp.TCPConnector)
        assert connector._keepalive_timeout == KEEPALIVE


class ClosingServer:
    """Answers the first request of its first connection, then closes that connection when
    the next request arrives on it; every later connection is answered."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first_connection = self.connections == 1
        try:
            for answered in range(100):
                request = await _request(reader)
                if request is None:
                    return
                self.requests.append(request)
                if first_connection and answered == 1:
                    return  # closed under the second request, unanswered
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        finally:
            writer.close()


async def _request(reader: asyncio.StreamReader) -> bytes | None:
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


@pytest.fixture
async def closing() -> AsyncIterator[tuple[ClosingServer, str]]:
    server = ClosingServer()
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}/api/v1/agent/results"
    finally:
        listener.close()
        await listener.wait_closed()


async def test_a_post_on_a_connection_the_collector_closed_is_sent_again_at_once(
    closing: tuple[ClosingServer, str],
) -> None:
    server, url = closing
    async with asyncio.timeout(DEADLINE), collector_session("token") as session:
        for batch in (b'{"n": 1}', b'{"n": 2}'):
            async with session.post(url, data=batch) as reply:
                assert reply.status == 200
    assert server.connections == 2
    assert [request.endswith(b'{"n": 2}') for request in server.requests] == [False, True, True]
