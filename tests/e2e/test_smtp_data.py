# SPDX-License-Identifier: GPL-3.0-or-later
"""GuardedSMTP's chunked DATA reader against stock aiosmtpd's line-by-line one, byte for byte.

Every case is sent over real SMTP on loopback to a stock aiosmtpd SMTP server and to GuardedSMTP,
also in a test-only subclass that reads at most a few octets at a time, so that chunk boundaries
fall everywhere in the data; the client also pauses between TCP segments, inside the "\\r\\n.\\r\\n"
terminator among other places. Both servers record envelope.original_content and envelope.content;
the replies (to DATA and to the commands pipelined right after the terminator) and the recordings
must be identical.
"""

from __future__ import annotations

import asyncio
import base64
import random
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from intake.transports.smtp_server import GuardedSMTP, SessionGauge, SmtpLimits

TERM = b".\r\n"                  # the terminator line; the CRLF before it ends the last data line
PIPELINED = b"NOOP\r\n" * 200    # more than the reader's 1001-octet limit, sent right after the "."
SIZE = 26_214_400


@dataclass
class Recorder:
    """The handler for both servers: keeps what DATA produced and accepts everything."""

    received: list[tuple[Any, Any]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.original_content, envelope.content))
        return "250 2.0.0 recorded"


class SmallReadsSMTP(GuardedSMTP):
    """GuardedSMTP reading at most max_read octets per read (test only)."""

    def __init__(self, *args: Any, max_read: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._data_max_read = max_read


@dataclass
class Servers:
    """A stock aiosmtpd server and GuardedSMTP variants on loopback, each with its own recorder."""

    ports: dict[str, int]
    recorders: dict[str, Recorder]
    gauges: dict[str, SessionGauge]
    servers: list[asyncio.AbstractServer]

    async def close(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


async def start_servers(size_limit: int | None = SIZE, small_reads: Sequence[int] = (1, 2, 3, 5, 7)) -> Servers:
    # GuardedSMTP has no "no limit"; aiosmtpd treats None and 0 alike, so 0 stands in for None.
    limits = SmtpLimits(max_message_size=size_limit or 0, max_commands=10_000, max_bad_commands=10_000)
    factories: dict[str, Any] = {
        "stock": lambda r, g: SMTP(r, hostname="stock.test", data_size_limit=size_limit,
                                   enable_SMTPUTF8=True, decode_data=False),
        "guarded": lambda r, g: GuardedSMTP(r, hostname="guarded.test", limits=limits, gauge=g),
    }
    for n in small_reads:
        factories[f"reads-of-{n}"] = lambda r, g, n=n: SmallReadsSMTP(
            r, hostname="guarded.test", limits=limits, gauge=g, max_read=n)
    made = Servers({}, {}, {}, [])
    loop = asyncio.get_running_loop()
    for name, factory in factories.items():
        recorder = made.recorders[name] = Recorder()
        gauge = made.gauges[name] = SessionGauge()
        server = await loop.create_server(lambda f=factory, r=recorder, g=gauge: f(r, g), "127.0.0.1", 0)
        made.servers.append(server)
        made.ports[name] = server.sockets[0].getsockname()[1]
    return made


async def reply(reader: asyncio.StreamReader) -> str:
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line:
            raise ConnectionError("closed: " + repr(lines))
        lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if line[3:4] != b"-":
            return "\n".join(lines)


async def transaction(port: int, stream: bytes, *, pipelined: bytes = PIPELINED,
                      pieces: Sequence[int] = ()) -> list[str]:
    """Send stream (the raw DATA octets, terminator included) and return every reply from 354 on.

    pieces are offsets into stream at which the client pauses, so the server receives separate
    TCP segments there.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reply(reader)
        for command in (b"EHLO client.test", b"MAIL FROM:<jane@customer.example>",
                        b"RCPT TO:<support@example.com>"):
            writer.write(command + b"\r\n")
            assert (await reply(reader)).startswith("250")
        writer.write(b"DATA\r\n")
        replies = [await reply(reader)]
        start = 0
        for offset in pieces:
            writer.write(stream[start:offset])
            await writer.drain()
            await asyncio.sleep(0.005)
            start = offset
        # The commands go in the same write as the end of the data, so a reader that took more than
        # the data (or stepped through the terminator in small reads) is caught.
        writer.write(stream[start:] + pipelined + b"QUIT\r\n")
        for _ in range(pipelined.count(b"\r\n") + 2):
            replies.append(await reply(reader))
        return replies
    finally:
        writer.close()
        await writer.wait_closed()


async def compare(servers: Servers, stream: bytes, **kwargs: Any) -> tuple[list[str], list[tuple[Any, Any]]]:
    """Send stream to every server; assert identical replies and recordings; return stock's."""
    results = {}
    for name, port in servers.ports.items():
        before = len(servers.recorders[name].received)
        replies = await transaction(port, stream, **kwargs)
        results[name] = (replies, servers.recorders[name].received[before:])
    expected = results.pop("stock")
    for name, got in results.items():
        assert got[0] == expected[0], f"{name}: replies differ for {stream[:120]!r}"
        assert got[1] == expected[1], f"{name}: recorded content differs for {stream[:120]!r}"
    return expected


@pytest.fixture
async def servers() -> Any:
    made = await start_servers()
    yield made
    await made.close()


def line(n: int, fill: bytes = b"x") -> bytes:
    return fill * n + b"\r\n"


CASES: dict[str, bytes] = {
    "empty body": TERM,
    "one empty line": b"\r\n" + TERM,
    "simple": b"Subject: hi\r\n\r\nHello.\r\n" + TERM,
    "stuffed dot lines": b"..\r\n...\r\n....x\r\n..x\r\na\r\n..\r\nb\r\n" + TERM,
    "first line stuffed dot": b"..\r\n" + TERM,
    "first line stuffed dots": b"...x\r\nb\r\n" + TERM,
    "unstuffed single dots": b".x\r\n. \r\na\r\n.y\r\n" + TERM,
    "bare LF lines": b"a\nb\n.\nc\n..\nd\r\n" + TERM,
    "bare LF before dot line": b"a\n.\r\n" + TERM,
    "bare CR before dot line": b"a\r.\r\n" + TERM,
    "bare CR": b"a\rb\r\r\n\r\rc\r\n" + TERM,
    "dot CR CR LF": b"a\r\n.\r\r\n" + TERM,
    "dot CR then text": b"a\r\n.\rb\r\n" + TERM,
    "dot LF": b"a\r\n.\n\r\n" + TERM,
    "terminator look-alikes": b"\r\n. \r\n..\r\n.\t\r\n" + TERM,
    "only LF endings": b"a\nb\n.\n\r\n" + TERM,
    "8-bit": b"Subject: caf\xc3\xa9\r\n\r\n\xff\xfe\x80\x00 \xe2\x82\xac\r\n.\xff\r\n" + TERM,
    "CRLF then many empty lines": b"\r\n" * 50 + TERM,
    "text 998": line(998) + TERM,
    "text 999": line(999) + TERM,
    "text 1000": line(1000) + TERM,
    "text 1001": line(1001) + TERM,
    "text 1002": line(1002) + TERM,
    "text 1003": line(1003) + TERM,
    "text 5000": line(5000) + TERM,
    "stuffed dot plus 999": b"." + line(999, b".") + TERM,
    "stuffed dot plus 1000": b"." + line(1000, b".") + TERM,
    "long line then good mail": line(3000) + b"a\r\n" + TERM,
    "long line of bare LFs": b"ab\n" * 400 + b"\r\n" + TERM,
    "long line ending in CR": b"y" * 1500 + b"\r\r\n" + TERM,
    "long line after lines": line(70) * 40 + line(1000) + line(70) + TERM,
}


@pytest.mark.parametrize("name", list(CASES))
async def test_same_content_and_replies_as_stock(servers, name):
    replies, recorded = await compare(servers, CASES[name])
    assert replies[0].startswith("354")
    assert replies[-1].startswith("221")


async def test_dot_stuffing_is_undone_exactly_as_stock():
    # A sanity check that compare() really compares: the expected content, spelled out.
    made = await start_servers(small_reads=(1,))
    try:
        replies, recorded = await compare(made, b"..\r\n...x\r\n.y\r\nz\r\n" + TERM)
        assert recorded == [(b".\r\n..x\r\ny\r\nz\r\n", b".\r\n..x\r\ny\r\nz\r\n")]
        assert replies[1] == "250 2.0.0 recorded"
        replies, recorded = await compare(made, TERM)
        assert recorded == [(b"", b"")]
        replies, recorded = await compare(made, line(1000) + TERM)
        assert replies[1] == "500 Line too long (see RFC5321 4.5.3.1.6)" and recorded == []
    finally:
        await made.close()


async def test_large_base64_body_in_tcp_segments():
    made = await start_servers(small_reads=(4096,))
    try:
        payload = base64.encodebytes(random.Random(5).randbytes(3_750_000)).replace(b"\n", b"\r\n")
        assert len(payload) > 5_000_000
        stream = b"Content-Transfer-Encoding: base64\r\n\r\n" + payload + TERM
        replies, recorded = await compare(made, stream, pieces=(1_000_003, 2_500_001, len(stream) - 4))
        assert recorded[0][0] == stream[:-3]
    finally:
        await made.close()


@pytest.mark.parametrize("cut", range(-6, 1))
async def test_segment_boundaries_inside_the_terminator(servers, cut):
    stream = b"Subject: x\r\n\r\n" + line(70) * 30 + b".a\r\n..\r\n" + TERM
    await compare(servers, stream, pieces=(len(stream) + cut - 1, len(stream) + cut))


@pytest.mark.parametrize("cut", range(0, 4))
async def test_segment_boundaries_inside_an_empty_message(servers, cut):
    await compare(servers, TERM, pieces=(cut,))


@pytest.mark.parametrize(("size_limit", "stream"), [
    (1000, line(98) * 10 + TERM),                         # exactly at the limit
    (1000, line(98) * 10 + b"\r\n" + TERM),               # one CRLF over
    (1000, line(97) * 10 + b"..x\r\n" + TERM),            # over only because of a transparency dot
    (1000, line(98) * 9 + line(999) + TERM),              # crosses the limit with a too-long line
    (1000, line(98) * 9 + line(1002) + TERM),             # a line the reader's limit overruns
    (1000, line(98) * 9 + line(5000) + TERM),
    (1000, line(50) + line(1500) + line(98) * 20 + TERM),  # too long first, too much later
    (1, b"\r\n" + TERM),
    (1, TERM),
    (None, line(999) * 40 + TERM),
])
async def test_size_limit_as_stock(size_limit, stream):
    made = await start_servers(size_limit)
    try:
        await compare(made, stream)
    finally:
        await made.close()


async def test_smtplib_message_without_final_crlf():
    # smtplib adds the CRLF before the "." itself, and doubles leading dots (RFC 5321 4.5.2).
    made = await start_servers(small_reads=(1, 3))
    try:
        body = b"Subject: x\r\n\r\n.leading dot\r\n..two\r\n.\r\nlast line without CRLF"

        def send(port: int) -> None:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail("jane@customer.example", ["support@example.com"], body)

        for port in made.ports.values():
            await asyncio.to_thread(send, port)
        expected = body + b"\r\n"
        assert {name: r.received for name, r in made.recorders.items()} == {
            name: [(expected, expected)] for name in made.ports}
    finally:
        await made.close()


async def test_connection_lost_in_the_middle_of_data_frees_its_slot(servers):
    for name in ("guarded", "reads-of-3"):
        reader, writer = await asyncio.open_connection("127.0.0.1", servers.ports[name])
        await reply(reader)
        for command in (b"EHLO c.test", b"MAIL FROM:<a@b.example>", b"RCPT TO:<support@example.com>", b"DATA"):
            writer.write(command + b"\r\n")
            await reply(reader)
        writer.write(line(70) * 100 + b"\r\n.")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        gauge = servers.gauges[name]
        for _ in range(200):
            if gauge.connections == 0:
                break
            await asyncio.sleep(0.01)
        assert (gauge.connections, gauge.data_in_flight) == (0, 0)
        assert servers.recorders[name].received == []


# Random bodies -------------------------------------------------------------------------------------

PIECES = [b"a", b"xyz", b".", b"..", b"\r\n", b"\r", b"\n", b"\r\n.", b".\r", b"\xff\xc3", b" ",
          b"\r\n.\r", b"x" * 997, b"y" * 1000, b"z" * 1003]


def stuffed(body: bytes) -> bytes:
    """What a correct client sends for body: leading dots doubled, a final CRLF, the "." line."""
    lines = body.split(b"\r\n")
    data = b"\r\n".join(b"." + x if x.startswith(b".") else x for x in lines)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + TERM


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=40), stuff=st.booleans(),
       size_limit=st.sampled_from([None, 50, 1000, 4000]), cut=st.integers(0, 20), data=st.data())
def test_random_bodies_match_stock(pieces, stuff, size_limit, cut, data):
    body = b"".join(pieces)
    if stuff:
        stream = stuffed(body)
    else:
        # A sloppy client that does no stuffing; only bodies whose first "." line is the last count.
        stream = body + b"\r\n" + TERM
        assume((b"\r\n" + stream).find(b"\r\n.\r\n") == len(stream) - 3)
    reads = data.draw(st.sampled_from([1, 2, 3, 5, 64]))
    pieces_at = sorted({max(0, len(stream) - cut), len(stream) // 2})

    async def run() -> None:
        made = await start_servers(size_limit, small_reads=(reads,))
        try:
            replies, recorded = await compare(made, stream, pieces=pieces_at)
            if stuff and replies[1].startswith("250"):
                # Stuffing undone gives back the body, with the CRLF the client added before the ".".
                assert recorded[0][0] == body + (b"\r\n" if body and not body.endswith(b"\r\n") else b"")
        finally:
            await made.close()

    asyncio.run(run())
