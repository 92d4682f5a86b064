"""The standard streams, guarded: how a run ends when stdout, stdin or stderr fails.

A reader that leaves early (``embinspect ... | head -1``, EPIPE) ends the run quietly
with 0, as Unix tools do. Any other failure of a standard stream (a full disk, a closed
descriptor) ends it with ``EXIT_IO`` and one line on stderr, when stderr can take it. A
stderr that fails is dropped silently: the exit code still says how the run went.

Writes to stdout go through ``_Guarded``, which turns the OS error into ``ReaderGone`` or
``StreamError`` (neither is an OSError, so Click's own EPIPE handling, which exits 1,
never sees them), and discards everything written after the first failure, so that the
flush Python does at exit cannot fail a second time ("Exception ignored ...").
"""

from __future__ import annotations

import errno
import io
import os
import sys
from collections.abc import Iterator
from typing import Any, TypeVar

from embinspect.errors import StreamError

T = TypeVar("T")


class ReaderGone(Exception):  # noqa: N818 (not an error: the reader has what it wanted)
    """stdout's reader closed the pipe (EPIPE): the run stops quietly with 0."""


class _Guarded(io.FileIO):
    """A standard stream's descriptor, written through, its failures named."""

    def __init__(self, fd: int, name: str) -> None:
        super().__init__(fd, "w", closefd=False)
        self.label = name
        self.failed = False

    def write(self, data: Any) -> int:
        if self.failed:
            return len(data)  # the run is ending: nothing more reaches the stream
        try:
            written = super().write(data)
        except OSError as err:
            self.failed = True
            if self.label == "stderr":
                return len(data)  # nowhere left to say so: dropped, the exit code stands
            if err.errno == errno.EPIPE:
                raise ReaderGone from None
            raise StreamError(f"standard output: cannot write ({_reason(err)})") from None
        return len(data) if written is None else written


class _Closed(io.RawIOBase):
    """A standard stream whose descriptor was closed when the process started."""

    def __init__(self, name: str) -> None:
        self.label = name
        self.failed = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if not self.failed and self.label != "stderr":
            self.failed = True
            raise StreamError("standard output: closed (nothing can be written to it)")
        return len(data)


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _occupy_closed_descriptors() -> set[int]:
    """Which of 0, 1, 2 were closed; each is opened on /dev/null, so that no file the run
    opens later takes its number (and a library writing to fd 2 cannot write into it)."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    return closed


def _wrapped(stream: Any, fd: int, name: str, errors: str) -> Any:
    raw = _Guarded(fd, name)
    return io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding=getattr(stream, "encoding", None) or "utf-8",
        errors=errors,
        # Python's stderr is write-through when it is not a terminal (each note reaches a
        # pipe or a log as it is written, not when the run ends): here, each line is.
        line_buffering=bool(
            getattr(stream, "line_buffering", False) or getattr(stream, "write_through", False)
        ),
    )


def guard() -> tuple[Any, Any]:
    """Put guarded writers in place of ``sys.stdout`` and ``sys.stderr`` where they are the
    process's own descriptors (a caller's in-memory streams are left alone); a stream
    whose descriptor was closed at start fails on its first write (stderr: silently).
    Returns the streams replaced, for ``restore``."""
    saved = sys.stdout, sys.stderr
    closed = _occupy_closed_descriptors()
    for name, fd, errors in (("stdout", 1, "backslashreplace"), ("stderr", 2, "backslashreplace")):
        stream = getattr(sys, name)
        if stream is None or fd in closed:
            replacement: Any = io.TextIOWrapper(io.BufferedWriter(_Closed(name)), "utf-8")
        elif _descriptor(stream) == fd:
            stream.flush()
            replacement = _wrapped(stream, fd, name, errors)
        else:
            continue
        setattr(sys, name, replacement)
    if sys.stdin is None or 0 in closed:
        sys.stdin = None  # type: ignore[assignment] (options._stdin_lines names it closed)
    return saved


def _descriptor(stream: Any) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


def quiet_stdout() -> None:
    """After a failure of stdout: whatever is still buffered is dropped, and the descriptor
    points at /dev/null, so that nothing written later (or flushed at exit) can fail."""
    raw = _raw(sys.stdout)
    if raw is not None:
        raw.failed = True
    elif _descriptor(sys.stdout) is not None:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _raw(stream: Any) -> _Guarded | _Closed | None:
    raw = getattr(getattr(stream, "buffer", None), "raw", None)
    return raw if isinstance(raw, (_Guarded, _Closed)) else None


def restore(saved: tuple[Any, Any]) -> None:
    """Flush-free: the guarded writers are left to be collected, the original streams back."""
    sys.stdout, sys.stderr = saved


class LiveInput:
    """stdin read from its descriptor as lines arrive, for ``-``: ``readline`` as a binary
    file's, and ``ready()``, which says whether the next line can be had without waiting.

    A search answers what is already at hand and no more (``tables.search.at_hand``):
    lines a pipe holds are answered together, a batch at a time, while a person typing or
    ``tail -f`` gets each answer as its line arrives, not after 256 lines or at EOF.
    Python's own buffered reader cannot say whether a read would wait: bytes it holds are
    invisible to ``select``, so this keeps its own buffer.
    """

    CHUNK = 1 << 16
    # ready() reads ahead at most this much past a line with no end yet: a huge line
    # is then at hand in pieces (readline returns one), and memory stays bounded.
    READ_AHEAD = 1 << 20

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.start = 0  # bytes before it were handed out already
        self.eof = False
        self.pollable = sys.platform != "win32"  # select() takes sockets only on Windows

    def _fill(self) -> None:
        if self.start > self.CHUNK:  # drop what was handed out, now and then, not per line
            del self.buffer[: self.start]
            self.start = 0
        chunk = os.read(self.fd, self.CHUNK)
        if chunk:
            self.buffer += chunk
        else:
            self.eof = True

    def _line_end(self, limit: int) -> int:
        return self.buffer.find(b"\n", self.start, self.start + limit)

    def readline(self, limit: int) -> bytes:
        """The next line with its newline, at most ``limit`` bytes of it; b"" at EOF."""
        while True:
            end = self._line_end(limit)
            held = len(self.buffer) - self.start
            if end >= 0 or held >= limit or (self.eof and held):
                stop = end + 1 if end >= 0 else self.start + min(limit, held)
                line = bytes(self.buffer[self.start : stop])
                self.start = stop
                return line
            if self.eof:
                return b""
            self._fill()

    def ready(self) -> bool:
        """Whether ``readline`` can answer without waiting for more input."""
        import select

        while True:
            held = len(self.buffer) - self.start
            if self.eof or self._line_end(held) >= 0 or held >= self.READ_AHEAD:
                return True
            if not self.pollable:
                return False  # each line is answered alone: correct, only slower
            try:
                readable, _, _ = select.select([self.fd], [], [], 0)
                if not readable:
                    return False
                self._fill()
            except (OSError, ValueError):
                return True  # readline meets the same failure and reports it


class BufferedInput:
    """A stdin that is no descriptor (a caller's in-memory stream): all of it is at hand."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def readline(self, limit: int) -> bytes:
        line: bytes = self.source.readline(limit)
        return line

    def ready(self) -> bool:
        return True


_input: tuple[Any, LiveInput | BufferedInput] | None = None


def stdin_input() -> LiveInput | BufferedInput:
    """The reader of ``sys.stdin`` as it is now, made once per stdin stream (a second ``-``
    goes on where the first stopped, as with Python's own buffered reader)."""
    global _input
    stream = sys.stdin
    if _input is not None and _input[0] is stream:
        return _input[1]
    fd = _descriptor(stream)
    reader: LiveInput | BufferedInput
    reader = LiveInput(fd) if fd is not None else BufferedInput(stream.buffer)
    _input = (stream, reader)
    return reader


class Arriving(Iterator[T]):
    """Items read from stdin (``-``) among others, and ``ready()``: whether the next one can
    be had without waiting, which is how a search knows to answer what it has so far."""

    def __init__(self, items: Iterator[T], reads_stdin: bool) -> None:
        self.items = items
        self.reads_stdin = reads_stdin

    def __next__(self) -> T:
        return next(self.items)

    def ready(self) -> bool:
        return not self.reads_stdin or sys.stdin is None or stdin_input().ready()
