"""Shared fixtures: the real test checkpoints, and two runners for the real CLI.

The checkpoints are built once into an ignored cache by ``tests/checkpoints.py``.

``cli`` / ``run_cli`` run ``embinspect.cli.main(argv)`` in this process, with its own stdin,
stdout, stderr, environment and working directory for the call, all restored after: the same
answers as a fresh process, without importing torch again for each of the ~400 runs.
``cli_process`` / ``run_process`` start ``python -m embinspect`` as a user would, for what
only a process shows: signals, closed pipes, start-up imports and ``PYTHONPATH``, tracebacks
Python prints itself, memory, and other process-wide state.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# huggingface_hub reads its environment once, at import; a CLI process reads it fresh each
# run, the in-process runs share one reading, taken here under the test process's own
# environment (not under a run's: `embinspect` in a pipe sets HF_HUB_DISABLE_PROGRESS_BARS=1,
# which would hide every later run's download bars).
import huggingface_hub.constants  # noqa: F401
import huggingface_hub.utils.tqdm  # noqa: F401
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import checkpoints  # noqa: E402


@pytest.fixture(scope="session")
def minilm() -> Path:
    """Real sentence-transformers/all-MiniLM-L6-v2 (BERT, one f32 model.safetensors)."""
    return checkpoints.minilm_dir()


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """Real SmolLM2-135M-Instruct values (dequantized from its GGUF) as bf16 HF shards."""
    return checkpoints.smollm2_dir()


@pytest.fixture(scope="session")
def gpt2() -> Path:
    """Real GPT-2 tokenizer files with SYNTHETIC seeded-random GPT-2 weights (50304 rows)."""
    return checkpoints.gpt2_dir()


@pytest.fixture(scope="session")
def glove() -> Path:
    """Real GloVe 6B 50d as ``glove.6B.50d.txt`` (400,000 words x 50, no header)."""
    return checkpoints.glove_6b_50d()


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)

    def jsonl(self):
        assert self.returncode == 0, self.stderr
        return [json.loads(line) for line in self.stdout.splitlines()]


def _cli_env(env: dict[str, str | None] | None) -> dict[str, str]:
    """The environment of a run: this one's, a pinned terminal, the test cache, ``env``
    (a name given as None is left unset)."""
    # embinspect's own cache (GGUF tokenizers) in the ignored test cache, not in ~/.cache.
    own_cache = str(checkpoints.cache_root() / "embinspect-cache")
    full_env = {
        **os.environ,
        "COLUMNS": "120",
        "NO_COLOR": "1",
        "EMBINSPECT_CACHE": own_cache,
        **(env or {}),
    }
    if "EMBINSPECT_DEBUG" not in (env or {}):
        full_env.pop("EMBINSPECT_DEBUG", None)
    return {name: value for name, value in full_env.items() if value is not None}


def read_terminal(leader: int) -> bytes:
    """Everything a child wrote to the pseudo-terminal whose ``leader`` end this is, read
    while it runs (a full terminal buffer would block it) until it closes it; closes
    ``leader``."""
    shown = b""
    try:
        while chunk := os.read(leader, 65536):
            shown += chunk
    except OSError:  # EIO: the child closed the terminal
        pass
    os.close(leader)
    return shown


def run_process(*args: str | os.PathLike, env: dict[str, str] | None = None, **kwargs) -> Run:
    """Run ``python -m embinspect ARGS`` in a fresh process, as a user would."""
    done = subprocess.run(
        [sys.executable, "-m", "embinspect", *map(str, args)],
        capture_output=True,
        text=True,
        env=_cli_env(env),
        timeout=600,
        **kwargs,
    )
    return Run(done.returncode, done.stdout, done.stderr)


# --- in-process runs -------------------------------------------------------------------------

ENCODING = "utf-8"

# What a fresh interpreter starts with (no -W, no PYTHONWARNINGS): warnings raised during a run
# are printed on its stderr, as the process would print them, not collected by pytest.
_DEFAULT_WARNING_FILTERS = [
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, ""),
    ("ignore", PendingDeprecationWarning, ""),
    ("ignore", ImportWarning, ""),
    ("ignore", ResourceWarning, ""),
]


def _stream(like, data: bytes = b"") -> io.TextIOWrapper:
    """A text stream over bytes, as a pipe gives a process: ``.buffer``, not a terminal,
    and the error handler a process started here gets for that stream (``like``: this
    process's own; stderr's is backslashreplace)."""
    errors = getattr(like, "errors", None) or "strict"
    return io.TextIOWrapper(io.BytesIO(data), ENCODING, errors, write_through=True)


def _text(stream: io.TextIOWrapper) -> str:
    """What ``subprocess.run(text=True)`` would read from the stream: universal newlines."""
    stream.flush()
    return io.TextIOWrapper(io.BytesIO(stream.buffer.getvalue()), encoding=ENCODING).read()


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` for the run, and exactly what it was afterwards (the CLI
    itself sets HF_HUB_OFFLINE for ``--offline``)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _standard_streams(stdin, stdout, stderr) -> Iterator[None]:
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def _warnings_to(stderr) -> Iterator[None]:
    def show(message, category, filename, lineno, file=None, line=None):
        stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category, module in reversed(_DEFAULT_WARNING_FILTERS):
            warnings.filterwarnings(action, category=category, module=module)
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _logging_to(stderr) -> Iterator[None]:
    """Log records reach the run's stderr as in a process: the root logger without pytest's
    capturing handlers (so unhandled records go to ``logging.lastResort``, on sys.stderr),
    and the libraries' own stderr handlers (transformers, huggingface_hub) writing to it."""
    root = logging.getLogger()
    saved_root = root.handlers[:]
    root.handlers = []
    moved = []
    for logger in [root, *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if type(handler) is logging.StreamHandler and handler.stream is not sys.__stdout__:
                moved.append((handler, handler.stream))
                handler.stream = stderr
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.stream = stream
        root.handlers = saved_root


@contextlib.contextmanager
def _library_settings() -> Iterator[None]:
    """What a run sets for the rest of its process (log levels: embinspect quiets
    huggingface_hub; progress bars: it turns them off) is put back, as a process ends."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    levels = [(lg, lg.level, lg.propagate, lg.disabled) for lg in loggers if hasattr(lg, "level")]
    hub_tqdm = sys.modules.get("huggingface_hub.utils.tqdm")
    bars = dict(hub_tqdm.progress_bar_states) if hub_tqdm else None
    try:
        yield
    finally:
        for logger, level, propagate, disabled in levels:
            if logger.level != level:  # setLevel clears every logger's cache: only if needed
                logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled
        if bars is not None:
            hub_tqdm.progress_bar_states.clear()
            hub_tqdm.progress_bar_states.update(bars)


def _constants_under_current_environment(module) -> dict[str, object]:
    """The values ``module`` would hold if imported now, under ``os.environ``."""
    spec = importlib.util.find_spec(module.__name__)
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    return {
        name: value
        for name, value in vars(fresh).items()
        if not name.startswith("__")
        and not callable(value)
        and not isinstance(value, types.ModuleType)
    }


def _rebind(changes: dict[str, tuple[object, object]], prefixes: tuple[str, ...]) -> None:
    """For each ``name: (old, new)``, every module under ``prefixes`` whose ``name`` is
    ``old`` gets ``new`` instead (``from huggingface_hub.constants import HF_ASSETS_CACHE``
    made a copy of it)."""
    if not changes:
        return
    modules = [m for n, m in list(sys.modules.items()) if n.startswith(prefixes)]
    for name, (old, new) in changes.items():
        for module in modules:
            # The module's own names only: getattr would run a lazy module's __getattr__,
            # which imports (transformers 5.18 then needs torchvision for one of them).
            if vars(module).get(name, new) is old:
                setattr(module, name, new)


class _HubConstants:
    """huggingface_hub reads HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN_PATH... into
    ``huggingface_hub.constants`` once, at import, which in a process comes after the CLI
    has started (and after ``--offline`` set HF_HUB_OFFLINE). For a run they are what that
    import would read from ``os.environ`` now, again whenever the run sets a variable, and
    the process's own values after the run."""

    PREFIXES = ("huggingface_hub", "transformers")

    def __init__(self) -> None:
        self.module = sys.modules["huggingface_hub.constants"]  # imported above, under ours
        self.original: dict[str, object] = {}

    def follow_environment(self) -> None:
        changes = {}
        for name, value in _constants_under_current_environment(self.module).items():
            current = getattr(self.module, name, value)
            if current != value:
                self.original.setdefault(name, current)
                changes[name] = (current, value)
        _rebind(changes, self.PREFIXES)

    def restore(self) -> None:
        changes = {
            name: (getattr(self.module, name), value) for name, value in self.original.items()
        }
        _rebind(changes, self.PREFIXES)


class _WatchedEnviron(os._Environ):
    """``os.environ`` (the same variables) calling ``changed`` after each assignment."""

    def __init__(self, environ: os._Environ, changed) -> None:
        super().__init__(
            environ._data,
            environ.encodekey,
            environ.decodekey,
            environ.encodevalue,
            environ.decodevalue,
        )
        self._changed = changed

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self._changed()

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        self._changed()


@contextlib.contextmanager
def _hub_constants() -> Iterator[None]:
    constants = _HubConstants()
    constants.follow_environment()
    environ = os.environ
    os.environ = _WatchedEnviron(environ, constants.follow_environment)  # noqa: B003 (same variables)
    try:
        yield
    finally:
        os.environ = environ  # noqa: B003 (the same variables, unwatched)
        constants.restore()


@contextlib.contextmanager
def _working_directory(cwd: str | os.PathLike | None) -> Iterator[None]:
    if cwd is None:
        yield
        return
    saved = os.getcwd()
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved)


def run_cli(
    *args: str | os.PathLike,
    env: dict[str, str] | None = None,
    input: str | bytes | None = None,
    cwd: str | os.PathLike | None = None,
) -> Run:
    """Run ``embinspect ARGS`` in this process: ``embinspect.cli.main(argv)`` with stdin
    fed from ``input`` (empty if None), stdout and stderr captured, the environment
    ``run_process`` gives, and SystemExit's code as the return code. An exception that
    escapes ``main`` fails the test."""
    data = input.encode(ENCODING) if isinstance(input, str) else (input or b"")
    stdin = _stream(sys.__stdin__, data)
    stdout, stderr = _stream(sys.__stdout__), _stream(sys.__stderr__)
    code = run_main(args, stdin, stdout, stderr, env=env, cwd=cwd)
    return Run(code, _text(stdout), _text(stderr))


def run_main(args, stdin, stdout, stderr, env: dict[str, str] | None = None, cwd=None) -> int:
    """``embinspect.cli.main(args)`` in this process on the given text streams (as
    ``run_cli``, which makes them; ``tests/readme_examples.py`` brings a terminal's),
    returning the exit code."""
    from embinspect.cli import main

    with (
        _environment(_cli_env(env)),
        _working_directory(cwd),
        _standard_streams(stdin, stdout, stderr),
        _warnings_to(stderr),
        _logging_to(stderr),
        _library_settings(),
        _hub_constants(),
    ):
        try:
            main([str(a) for a in args])
        except SystemExit as done:
            code = done.code
        else:
            raise AssertionError("embinspect.cli.main returned instead of raising SystemExit")
    if code is None:
        return 0
    if not isinstance(code, int):  # as Python does for sys.exit("message")
        stderr.write(f"{code}\n")
        return 1
    return code


@pytest.fixture
def cli():
    """Run the CLI in this process (``run_cli``)."""
    return run_cli


@pytest.fixture(params=["numpy", "torch"])
def scan_engine(request, monkeypatch):
    """The test once on each scan engine (``tables/array_scan``): numpy's, forced (it hands
    to torch what it cannot bound: centred searches, 3CosMul, extreme rows), and torch's."""
    monkeypatch.setenv("EMBINSPECT_SCAN", request.param)
    return request.param


@pytest.fixture
def cli_process():
    """Run the CLI in a fresh process (``run_process``)."""
    return run_process
