"""stdin read as lines arrive, unit by unit: ``LiveInput`` (cli/streams.py) on a real pipe
and ``at_hand`` (tables/search.py), which makes a search's batches of what is at hand.
tests/test_stdin_streaming.py checks the same through a real process."""

from __future__ import annotations

import os
import sys

import pytest

from embinspect.cli.options import read_queries
from embinspect.cli.streams import LiveInput
from embinspect.tables.search import at_hand


@pytest.fixture
def pipe():
    """(LiveInput on a pipe's read end, a function writing to its write end, closing it)."""
    read_end, write_end = os.pipe()
    ends = {"write": write_end}

    def write(data: bytes) -> None:
        os.write(ends["write"], data)

    def close() -> None:
        os.close(ends.pop("write"))

    yield LiveInput(read_end), write, close
    os.close(read_end)
    if "write" in ends:
        os.close(ends["write"])


class Lines:
    """A LiveInput's lines as an iterator with its ``ready()``, as ``-`` gives them."""

    def __init__(self, source: LiveInput) -> None:
        self.source = source
        self.ready = source.ready

    def __iter__(self) -> Lines:
        return self

    def __next__(self) -> str:
        line = self.source.readline(1 << 16)
        if not line:
            raise StopIteration
        return line.decode().strip()


def test_a_line_split_across_two_reads_waits_for_its_end(pipe):
    source, write, close = pipe
    write(b"kin")
    assert not source.ready()  # half a line: readline would wait
    write(b"g\nque")
    assert source.ready()
    assert source.readline(100) == b"king\n"
    assert not source.ready()
    write(b"en\n")
    assert source.ready() and source.readline(100) == b"queen\n"
    close()
    assert source.ready() and source.readline(100) == b""


def test_buffered_lines_come_as_one_batch_up_to_the_size(pipe):
    source, write, close = pipe
    write(b"a\nb\nc\nd\ne\n")
    batches = at_hand(Lines(source), 3)
    assert next(batches) == ["a", "b", "c"]  # the size
    assert next(batches) == ["d", "e"]  # what is at hand; the pipe is still open
    write(b"f\n")
    close()
    assert list(batches) == [["f"]]


def test_at_hand_without_ready_is_batches_of_the_size():
    assert list(at_hand(iter("abcdefg"), 3)) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert list(at_hand([], 3)) == []


def test_eof_without_a_trailing_newline_yields_the_last_line(pipe):
    source, write, close = pipe
    write(b"king\nlast")
    close()
    assert [source.readline(100) for _ in range(3)] == [b"king\n", b"last", b""]


def test_a_line_longer_than_the_limit_comes_in_pieces(pipe):
    source, write, close = pipe
    write(b"abcdefgh\n")
    close()
    assert [source.readline(3) for _ in range(4)] == [b"abc", b"def", b"gh\n", b""]


def test_crlf_lines_are_the_queries_without_their_ends(pipe, monkeypatch):
    source, write, close = pipe
    write(b"king\r\n")
    assert source.readline(100) == b"king\r\n"  # the reader keeps the bytes as they are
    write(b"New York\r\n\r\nlast\r")
    close()
    with os.fdopen(os.dup(source.fd), "r") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        # What - gives: each line stripped of its \r\n, blank ones skipped.
        assert list(read_queries(["-"])) == ["New York", "last"]
