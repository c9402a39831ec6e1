# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading the DATA of an SMTP transaction in large chunks instead of one line at a time.

Stock aiosmtpd (1.4) awaits StreamReader.readuntil(b"\\r\\n") once per line of the message, which
caps a bare server at about 35-40 MB/s for mail with attachments on our machines. read_data gives
exactly the same result, byte for byte, with a few awaits per received TCP chunk:

- The end of the data is the first line that is "." alone (RFC 5321 4.1.1.4), i.e. the first
  b"\\r\\n.\\r\\n" in the stream, or b".\\r\\n" at its very start (an empty message). Lines are
  delimited by CRLF only, as in stock aiosmtpd: a bare CR or LF is part of a line (RFC 5321 2.3.8
  forbids them; stock keeps them, and so do we).
- Nothing after the terminator is consumed: a client that sends its next commands straight after
  the "." finds them answered, as with the stock reader.
- A line that begins with "." loses that first dot (RFC 5321 4.5.2). Stock aiosmtpd removes the
  first dot of every such line, not only of "..", and so does this.
- The limits are stock aiosmtpd's, decided in the same order, so the replies are the same: a line
  longer than line_length_limit (1001 octets: 1000 of RFC 5321 4.5.3.1.6 with its CRLF, plus the
  transparency dot) answers "500 Line too long"; more than data_size_limit octets (counted with the
  transparency dots, before they are removed) answers 552 (RFC 5321 4.5.3.1.10). Both only after the
  terminator has been read (RFC 5321 4.2.5), and the data is dropped as soon as either is known.
"""

from __future__ import annotations

import asyncio
import enum
from io import BytesIO

TERMINATOR = b"\r\n.\r\n"
TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
TOO_MUCH = "552 Error: Too much mail data"


class _State(enum.Enum):
    NOMINAL = enum.auto()
    TOO_LONG = enum.auto()
    TOO_MUCH = enum.auto()


def _partial(tail: bytes) -> int:
    """The length of the longest proper prefix of TERMINATOR that tail ends with (0 to 4)."""
    for k in (4, 3, 2, 1):
        if tail.endswith(TERMINATOR[:k]):
            return k
    return 0


class _Body:
    """Collects the data bytes in order and applies stock aiosmtpd's limits line by line.

    Stock aiosmtpd reads with a StreamReader whose limit is line_length_limit, so a line whose text
    (without CRLF) is longer than that overruns the reader and is "too long" at once; otherwise the
    whole line (with CRLF) is counted against the size limit first and then its length is checked.
    The first of these events decides the reply, and only complete lines count against the size.
    """

    def __init__(self, line_limit: int, size_limit: int | None) -> None:
        self._line_limit = line_limit
        self._size_limit = size_limit or 0  # aiosmtpd: None or 0 means no limit
        # One buffer grown in place rather than a list of chunks joined at the end: the join would
        # hold every message twice at its last moment, and four large mails arriving at once are
        # what the memory target is about (docs/performance.md, "Memory").
        self._buffer = BytesIO()
        self._size = 0        # data octets fed so far
        self._tail = 0        # octets of the line not yet ended by CRLF
        self._cr = False      # the last octet fed was a CR (a CRLF may straddle two feeds)
        self.state = _State.NOMINAL

    def feed(self, data: bytes) -> None:
        if not data:
            return
        start, self._size = self._size, self._size + len(data)
        if self.state is not _State.NOMINAL:
            return
        self._buffer.write(data)
        if self._cr and data[0] == 0x0A:
            first_end = 1                           # a CRLF split between two feeds
        else:
            i = data.find(b"\r\n")
            first_end = i + 2 if i >= 0 else 0
        self._cr = data[-1] == 0x0D
        if not first_end:
            self._tail += len(data)
            self._check_tail()
            return
        last_end = max(first_end, data.rfind(b"\r\n") + 2)
        if self._tail + first_end > self._line_limit or self._has_long_line(data, first_end, last_end) \
                or (self._size_limit and start + last_end > self._size_limit):
            self._first_event(data, start, first_end, last_end)
            if self.state is not _State.NOMINAL:
                return
        self._tail = len(data) - last_end
        self._check_tail()

    def _has_long_line(self, data: bytes, pos: int, end: int) -> bool:
        """Whether a line between pos (a line start) and end (a line end) is longer than the limit.

        Each rfind looks one line limit ahead for the last CRLF there: every line before it fits, so
        a step skips about a thousand octets of ordinary mail instead of one line.
        """
        while pos < end:
            crlf = data.rfind(b"\r\n", pos, min(pos + self._line_limit, end))
            if crlf < 0:
                return True
            pos = crlf + 2
        return False

    def _check_tail(self) -> None:
        # An unfinished line of T octets has at least T - 1 octets of text (its last may be the CR
        # of its CRLF); past the limit, stock's readuntil overruns: too long, whatever comes next.
        if self._tail - 1 > self._line_limit:
            self._fail(_State.TOO_LONG)

    def _first_event(self, data: bytes, start: int, first_end: int, last_end: int) -> None:
        """Walk the lines ended in data, in order, to find which limit stock aiosmtpd hits first."""
        line_start = start - self._tail
        end = first_end
        while True:
            length = start + end - line_start
            if length - 2 > self._line_limit:       # the reader's limit overruns before counting
                self._fail(_State.TOO_LONG)
                return
            if self._size_limit and start + end > self._size_limit:
                self._fail(_State.TOO_MUCH)
                return
            if length > self._line_limit:           # stock's check of the complete line
                self._fail(_State.TOO_LONG)
                return
            if end >= last_end:
                return
            line_start = start + end
            end = data.find(b"\r\n", end) + 2

    def _fail(self, state: _State) -> None:
        self.state = state
        self._buffer = BytesIO()  # keep no more of a message we are going to refuse

    def result(self) -> tuple[bytes | None, str | None]:
        if self.state is _State.TOO_LONG:
            return None, TOO_LONG
        if self.state is _State.TOO_MUCH:
            return None, TOO_MUCH
        # getvalue() hands over the buffer itself (trimmed to size) rather than a copy of it.
        content = self._buffer.getvalue()
        self._buffer = BytesIO()
        # RFC 5321 4.5.2: remove the first "." of every line that begins with one. The body ends
        # with CRLF, so every line but the first begins right after a CRLF.
        if content[:1] == b".":
            content = content[1:]
        return content.replace(b"\r\n.", b"\r\n"), None


async def read_data(reader: asyncio.StreamReader, *, line_limit: int, size_limit: int | None,
                    max_read: int | None = None) -> tuple[bytes | None, str | None]:
    """Read one message's data after the 354, up to and including its terminating "." line.

    Returns (content, None), the content with the transparency dots removed, or (None, reply) when
    a limit was exceeded; the data has been read to its end either way. line_limit must be the
    StreamReader's own limit, as in aiosmtpd. max_read caps the octets taken per read, so tests can
    put chunk boundaries anywhere; None (the default) takes whatever has arrived.

    Only public StreamReader calls are used, and nothing past the terminator is ever consumed.
    """
    body = _Body(line_limit, size_limit)
    # RFC 5321 4.1.1.4: with no data, the CRLF of the DATA command line is the first CRLF of the
    # terminator, which readuntil cannot see. So at the start read exactly the octets that could
    # complete a terminator, until what was read ends with no prefix of one.
    matched = 2   # octets of TERMINATOR matched so far
    held = b""    # "." or ".\r" read but not yet known to be data rather than the terminator
    while matched:
        got = await reader.readexactly(5 - matched)
        window = TERMINATOR[:matched] + got
        if window == TERMINATOR:
            # The terminator's CRLF ends the last line of the data; its ".\r\n" is not data.
            body.feed(got[:max(0, 2 - matched)])
            return body.result()
        matched = _partial(window)
        keep = max(0, matched - 2)
        unfed = held + got
        body.feed(unfed[:len(unfed) - keep])
        held = unfed[len(unfed) - keep:]
    # From here no terminator can straddle two reads. readuntil returns at most the data up to and
    # including the first terminator; it raises LimitOverrunError when none starts within the
    # reader's limit, and e.consumed is then either that terminator's start or all but the last
    # four octets buffered, so no terminator starts in the octets we take (it would have been seen).
    while True:
        try:
            chunk = await reader.readuntil(TERMINATOR)
        except asyncio.LimitOverrunError as e:
            body.feed(await reader.read(e.consumed if max_read is None else max(1, min(e.consumed, max_read))))
            continue
        end = len(chunk) - 3
        step = max_read or end
        for i in range(0, end, step):
            body.feed(chunk[i:min(i + step, end)])
        return body.result()
