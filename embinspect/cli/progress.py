"""Progress bars on stderr: the CLI's reporter for the library's long steps
(``embinspect.progress``).

Drawn by Rich, only when stderr is a terminal and ``--quiet`` is not given: a script's log
or a pipe gets no bar, and its stderr holds only the notes and errors it always held.
Bars are transient (erased when their step ends) and never touch stdout. ``NO_COLOR``
(set and not empty) draws them without colour or any other style. The Hub's download bars
(huggingface_hub's tqdm) follow the same switch: ``Source.progress`` for embinspect's own
range reads, ``HF_HUB_DISABLE_PROGRESS_BARS`` for what transformers downloads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from embinspect.cli.render import progress_display
from embinspect.progress import Advance, reporting
from embinspect.text import terminal_line


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (a person watching, not a log)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def shows_bars(quiet: bool) -> bool:
    """Whether this run draws progress bars: not ``--quiet``, and stderr a terminal."""
    return not quiet and stderr_is_terminal()


@contextmanager
def bars(quiet: bool) -> Iterator[None]:
    """Progress bars for the steps run inside the block, when ``wanted``; otherwise none,
    huggingface_hub's included (a ``--tokenizer REPO`` that transformers downloads)."""
    if not shows_bars(quiet):
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        with reporting(None):
            yield
        return
    reporter = RichBars()
    try:
        with reporting(reporter):
            yield
    finally:
        # A step whose loop an error or Ctrl-C left (its generator not yet collected) must
        # not keep drawing, nor leave the cursor hidden, once the command is over.
        reporter.close()


class RichBars:
    """A reporter drawing each step as a Rich bar on stderr; steps that overlap (one
    inside another) share one display, which ends with the last of them."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._open = 0

    @contextmanager
    def __call__(self, label: str, total: int | None) -> Iterator[Advance]:
        if self._progress is None:
            self._progress = progress_display(no_color=os.environ.get("NO_COLOR", "") != "")
            self._progress.start()
        progress = self._progress
        task = progress.add_task(terminal_line(label), total=total)  # never read as markup
        self._open += 1
        try:
            yield lambda n: progress.advance(task, n)
        finally:
            if progress is self._progress:  # not closed meanwhile
                self._open -= 1
                if self._open:
                    progress.remove_task(task)
                else:  # the last step: its bar is drawn once more, as it ended, then erased
                    self.close()

    def close(self) -> None:
        """Stop drawing (the bars are erased), whatever steps are still open."""
        progress, self._progress, self._open = self._progress, None, 0
        if progress is not None:
            progress.stop()
