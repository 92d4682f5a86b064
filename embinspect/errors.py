"""What a user can get wrong, the exit code each mistake ends with, and the one channel
for notes.

Library code raises these errors; ``embinspect.cli.main`` turns them into one line on
stderr, and the API lets them through. Anything else escaping the library is a bug and
exits with ``EXIT_INTERNAL``. Notes and warnings (a tied output head, a missing
config.json) go through ``note()``: Python's ``warnings`` with ``EmbinspectWarning``,
which the API's users see as warnings and the CLI prints on stderr.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EXIT_INTERNAL = 1
EXIT_USAGE = 2  # the same code Click uses for a bad option or argument
EXIT_MODEL = 3
EXIT_QUERY = 4
EXIT_NETWORK = 5  # the Hub could not be reached: running again later may work
EXIT_IO = 74  # a standard stream failed (a full disk, a closed descriptor): BSD's EX_IOERR
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as a shell reports a process it ended: 128 + 2
EXIT_TERMINATED = 143  # SIGTERM, after cleaning up: 128 + 15


_UNSET = object()


@dataclass(frozen=True)
class Option:
    """An option named inside a message. The library names options by the API's keyword
    (``k``, ``word_filter``); each face words them its own way: ``k=0`` through the API,
    ``--top-k 0`` on the command line (``EmbinspectError.worded``)."""

    name: str  # the API's keyword
    value: object = _UNSET  # the value given, when the message is about it
    metavar: str | None = None  # what to give, when the message asks for one (PATH_OR_ID)

    @property
    def has_value(self) -> bool:
        return self.value is not _UNSET

    def __str__(self) -> str:
        if self.has_value:
            return f"{self.name}={self.value!r}"
        if self.metavar is not None:
            return f"{self.name}={self.metavar}"
        return self.name


class _Worded:
    """A message in parts, text and ``Option``s: ``message`` and ``str()`` in the API's
    words, ``worded(flag)`` in another face's."""

    parts: tuple[str | Option, ...]

    @property
    def message(self) -> str:
        return self.worded(str)

    def worded(self, option: Callable[[Option], str]) -> str:
        """The message, each ``Option`` spelled by ``option``."""
        return "".join(part if isinstance(part, str) else option(part) for part in self.parts)

    def __str__(self) -> str:
        return self.message


class EmbinspectError(_Worded, Exception):
    """A mistake the user can fix: ``message`` says what and how; ``exit_code`` is documented.

    The message is given in parts, text and ``Option``s, so that each face can name the
    options as its users spell them: ``str(err)`` and ``err.message`` in the API's words,
    ``err.worded(flag)`` in the command line's.
    """

    exit_code = EXIT_INTERNAL

    def __init__(self, *parts: str | Option) -> None:
        self.parts = parts
        super().__init__(self.message)


class UsageError(EmbinspectError):
    """The command line asks for something that cannot be done (a missing tokenizer, a bad id)."""

    exit_code = EXIT_USAGE


class ModelError(EmbinspectError):
    """MODEL is missing, unreadable, not safetensors, pickled, or holds no embedding tensor."""

    exit_code = EXIT_MODEL


class QueryError(EmbinspectError):
    """A query could not be turned into a row of the table."""

    exit_code = EXIT_QUERY


class NetworkError(EmbinspectError):
    """The Hub could not be reached, or a download broke off; nothing partial was kept."""

    exit_code = EXIT_NETWORK


class StreamError(EmbinspectError):
    """A standard stream failed: stdout on a full disk or a closed descriptor, stdin closed
    when queries are to be read from it."""

    exit_code = EXIT_IO


class Terminated(BaseException):  # noqa: N818 (a signal, as KeyboardInterrupt is)
    """SIGTERM arrived. Raised where the program was, as Ctrl-C raises KeyboardInterrupt,
    so that every ``finally`` and context manager on the way out runs: partial files and
    temporary folders are removed before the process ends (``EXIT_TERMINATED``)."""


class EmbinspectWarning(_Worded, UserWarning):
    """A note about what was read or left out (a tied output head, a -k larger than the
    table): ``kind`` is "note" or "warning" (something is missing or broken); the message
    comes in parts, as ``EmbinspectError``'s does, and ``str()`` words it for the API."""

    def __init__(self, *parts: str | Option, kind: str = "note") -> None:
        self.parts = parts
        self.kind = kind
        super().__init__(self.message)


def note(*parts: str | Option, kind: str = "note") -> None:
    """Issue a note (or, with ``kind="warning"``, a warning) through ``warnings``, as an
    ``EmbinspectWarning`` attributed to the first caller outside embinspect."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("embinspect"):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    warnings.warn(EmbinspectWarning(*parts, kind=kind), stacklevel=level)


@contextmanager
def reading(path: Path | str, expected: str) -> Iterator[None]:
    """Opening and reading a model file: the OS's errors become one-line ModelErrors
    (``expected`` names what the path should have been: "a .gguf file")."""
    try:
        yield
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, expected {expected}") from None
    except PermissionError:
        raise ModelError(f"{path}: permission denied") from None
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except OSError as err:
        raise ModelError(f"{path}: cannot read ({err.strerror or err})") from None
