"""Progress of the steps that take seconds, for whoever listens: the ground floor.

The library marks each long step (parsing a word-vector file, converting a GGUF file's
tokenizer, a pass over a whole table, a suite's questions) with ``task`` (and ``advance``
inside it), ``track`` or ``counting``.
Nothing is drawn unless a reporter is installed with ``reporting``: the CLI installs Rich
bars on stderr when stderr is a terminal and ``--quiet`` is not given; a notebook or a
script may install its own. With none installed, a step costs one context-variable
lookup, and steps advance a chunk or a block at a time, never a row at a time.

A reporter is a callable ``reporter(label, total)`` (``total``: the units the step will
count, None when not known in advance) that returns a context manager, entered when the
step starts and left when it ends however it ends, yielding ``advance(n)``::

    @contextlib.contextmanager
    def printed(label, total):
        done = 0
        def advance(n):
            nonlocal done
            done += n
            print(f"{label}: {done}/{total}")
        yield advance

    with embinspect.progress.reporting(printed):
        model = embinspect.load("glove.6B.50d.txt")
        model.stats()

Steps may nest (a reporter sees the inner one start before the outer one ends). The
reporter lives in a ``contextvars.ContextVar``: threads started by the caller do not
inherit it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import TypeVar

__all__ = ["Advance", "Reporter", "advance", "counting", "enabled", "reporting", "task", "track"]

Advance = Callable[[int], None]
Reporter = Callable[[str, "int | None"], AbstractContextManager[Advance]]
T = TypeVar("T")

_REPORTER: ContextVar[Reporter | None] = ContextVar("embinspect_progress", default=None)
# The advance of the innermost ``task`` block (``track`` and ``counting`` advance their own).
_CURRENT: ContextVar[Advance | None] = ContextVar("embinspect_progress_step", default=None)


def _ignored(n: int) -> None:
    pass


@contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Report the steps run inside the block to ``reporter`` (None: to nobody)."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def enabled() -> bool:
    """Whether a reporter listens (a step may skip work done only to report)."""
    return _REPORTER.get() is not None


@contextmanager
def task(label: str, total: int | None = None) -> Iterator[Advance]:
    """A step named ``label`` of ``total`` units: yields ``advance(n)``, to call as units
    are done (a no-op when nobody listens). Code called inside the block may advance it
    with the module's ``advance(n)`` instead, without being handed the function."""
    reporter = _REPORTER.get()
    if reporter is None:
        yield _ignored
        return
    with reporter(label, total) as step:
        current = _CURRENT.set(step)
        try:
            yield step
        finally:
            _CURRENT.reset(current)


def advance(n: int) -> None:
    """Advance the innermost ``task`` block open here by ``n`` units (nothing without one):
    for a loop deep inside a step, as a parser's blocks inside "Parsing word vectors"."""
    step = _CURRENT.get()
    if step is not None:
        step(n)


def track(
    items: Iterable[T], label: str, total: int, size: Callable[[T], int] | None = None
) -> Iterator[T]:
    """``items``, reported as a step of ``total`` units as they are taken: each item counts
    ``size(item)`` units (1 without ``size``). The step ends when the items do (or when the
    loop leaves early and drops the iterator)."""
    if _REPORTER.get() is None:
        return iter(items)
    return _tracked(items, label, total, size)


def counting(total: int, label: str, block: int = 1 << 16) -> Iterable[int]:
    """``range(total)``, reported as a step of ``total`` units a ``block`` at a time (for
    a loop over rows, whose bar must not cost a call per row)."""
    if _REPORTER.get() is None:
        return range(total)
    return _counted(total, label, block)


def _counted(total: int, label: str, block: int) -> Iterator[int]:
    with _step(label, total) as step:
        for start in range(0, total, block):
            yield from range(start, min(start + block, total))
            step(min(block, total - start))


def _tracked(
    items: Iterable[T], label: str, total: int, size: Callable[[T], int] | None
) -> Iterator[T]:
    with _step(label, total) as step:
        for item in items:
            yield item
            step(1 if size is None else size(item))


@contextmanager
def _step(label: str, total: int) -> Iterator[Advance]:
    """A step for a generator: it leaves ``advance``'s innermost step alone (a generator
    may be closed late, out of the order in which blocks were entered)."""
    reporter = _REPORTER.get()
    if reporter is None:
        yield _ignored
        return
    with reporter(label, total) as step:
        yield step
