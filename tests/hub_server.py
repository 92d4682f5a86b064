"""A stand-in for the Hugging Face Hub on 127.0.0.1, serving real checkpoint folders.

The test machines cannot reach the Hub, so embinspect's Hub path is tested against this
server with the real huggingface_hub client (``HF_ENDPOINT`` points here). It answers the
requests huggingface_hub and embinspect make, the way the Hub does:

- ``GET /api/models/{repo}/revision/{rev}``: the repo's commit (``sha``) and files
  (``siblings``, with sizes when ``?blobs=true``);
- ``GET /api/models/{repo}/tree/{rev}/{folder}``: the files and folders right under a
  folder (transformers lists ``additional_chat_templates``), ``EntryNotFound`` when none;
- ``HEAD|GET /{repo}/resolve/{rev}/{file}``: small files directly, with ``X-Repo-Commit``,
  ``ETag`` and ``Content-Length``; weight files (LFS on the Hub) as a 302 to a CDN URL on
  another origin (``localhost`` instead of ``127.0.0.1``, so clients must drop the
  token), with ``X-Linked-Etag`` and ``X-Linked-Size``;
- ``HEAD|GET /cdn/...``: the bytes, with ``Range`` answered by 206 and ``Content-Range``;
- errors as the Hub sends them, with ``X-Error-Code``: ``RepoNotFound`` (404),
  ``RevisionNotFound`` (404), ``EntryNotFound`` (404), ``GatedRepo`` (401 without a
  token, 403 with one that has no access).

Every request is logged (``requests``), with the byte range of a file actually sent, so
tests can assert what was fetched. ``break_at[file] = offset`` makes every response that
reaches that byte of the file stop there and close the connection, as a network that
drops mid-download.

A hostile or broken server: ``faults`` holds ``Fault``s, each answering the requests it
matches its own way (see ``Fault``): a status with ``Retry-After``, a redirect loop, bad
JSON, an answer too long, a Range ignored, a compressed range, more bytes than asked, a
trickle, a stall, or a pause mid-body (``paused`` is set when one starts; ``release()``
or ``reset()`` ends every stall and pause).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_CDN = re.compile(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<commit>[0-9a-f]{40})/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Repo:
    repo_id: str
    commits: dict[str, Path]  # commit -> folder served at that commit
    refs: dict[str, str]  # branch or tag -> commit
    gated: bool = False
    private: bool = False
    tokens: frozenset[str] = frozenset()  # tokens with access to a gated or private repo

    def files(self, commit: str) -> dict[str, Path]:
        root = self.commits[commit]
        return {
            p.relative_to(root).as_posix(): p
            for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        }

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


@dataclass
class Fault:
    """How the server misbehaves on the requests that ``where`` names.

    ``where``: ``api`` (the model API) or a repo file name (its resolve and CDN requests).
    ``kind``:

    - ``status``: answer ``status`` (with ``Retry-After: retry_after`` when set);
    - ``redirect-loop``: a 302 to the same URL, forever;
    - ``payload``: a 200 whose body is ``payload`` (bad JSON);
    - ``too-long``: a 200 whose Content-Length says 100 MB (and whose body is zeros);
    - ``garbage``: ``payload`` as the whole answer, status line and headers included;
    - ``silent``: no answer at all until released;
    - ``ignore-range``: the whole file with 200, whatever Range asked;
    - ``gzip``: the range asked, labelled ``Content-Encoding: gzip``;
    - ``overlong``: what was asked and ``extra`` bytes more, with no Content-Length;
    - ``trickle``: one byte every ``interval`` seconds;
    - ``stall``: ``after`` bytes, then nothing until released;
    - ``pause``: as ``stall``, setting ``FakeHub.paused`` when it starts.

    Body faults apply to GET requests whose range starts at ``from_byte`` or later.
    ``times``: how many requests it answers (None: all of them).
    """

    kind: str
    where: str
    times: int | None = None
    status: int = 503
    retry_after: str | None = None
    payload: bytes = b"{not json"
    from_byte: int = 0
    after: int = 0
    extra: int = 4096
    interval: float = 0.3

    @property
    def on_body(self) -> bool:
        return self.kind in {"ignore-range", "gzip", "overlong", "trickle", "stall", "pause"}


@dataclass(frozen=True)
class Request:
    method: str
    host: str  # 127.0.0.1 for the Hub, localhost for the CDN
    path: str  # unquoted, without the query
    range: str | None  # the Range header sent
    status: int
    file: str | None = None  # the repo file whose bytes were sent (resolve or CDN)
    sent: tuple[int, int] | None = None  # [start, stop) of the file's bytes actually sent
    authorized: bool = False  # an Authorization header came with it
    accept_encoding: str | None = None  # the Accept-Encoding header sent
    fault: str | None = None  # the kind of the Fault that answered it
    arrived: int = 0  # its place in the order requests came in


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)  # in the order they came in
    _arrivals: itertools.count = field(default_factory=itertools.count, repr=False)
    break_at: dict[str, int] = field(default_factory=dict)  # file name -> byte offset
    faults: list[Fault] = field(default_factory=list)
    paused: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    active: int = 0  # requests being answered now
    busy: threading.Condition = field(default_factory=threading.Condition)
    _released: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, repo_id: str, folder: Path, *, refs: tuple[str, ...] = ("main",), **kw) -> str:
        """Serve ``folder`` as ``repo_id`` at one commit, which every ref in ``refs`` names."""
        commit = hashlib.sha1(f"{repo_id}:{folder}".encode()).hexdigest()
        repo = self.repos.setdefault(repo_id, Repo(repo_id, {}, {}, **kw))
        repo.commits[commit] = folder
        for ref in refs:
            repo.refs[ref] = commit
        return commit

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def reset(self) -> None:
        # A client may leave before its last answer is logged (a redirect loop given up on):
        # let every answer end and be logged first, so it is not counted in the next test.
        self.release()
        self.settle(timeout=5)
        with self._lock:
            self.requests.clear()
            self.faults.clear()
        self.break_at.clear()
        self.release()

    def release(self) -> None:
        """End every stall and pause now, and let later ones stall again."""
        released, self._released = self._released, threading.Event()
        released.set()
        self.paused.clear()

    def settle(self, timeout: float = 10) -> None:
        """Wait until every request is answered (and logged): a client may go before that."""
        with self.busy:
            self.busy.wait_for(lambda: self.active == 0, timeout)

    def take(self, where: str, *, body: bool, start: int = 0) -> Fault | None:
        """The first fault that answers this request (counting it), if any."""
        with self._lock:
            for fault in self.faults:
                if fault.where != where or fault.on_body != body or start < fault.from_byte:
                    continue
                if fault.times is not None:
                    if fault.times <= 0:
                        continue
                    fault.times -= 1
                return fault
        return None

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` (a stall: until released); True when released meanwhile."""
        return self._released.wait(seconds)

    def log(self, request: Request) -> None:
        """Log an answered request in its place: a request is logged once answered, and a
        thread may log after a later request's thread has (the client moved on at once)."""
        with self._lock:
            bisect.insort(self.requests, request, key=lambda r: r.arrived)

    # --- what tests ask ------------------------------------------------------------------

    def bytes_sent(self, file: str) -> list[tuple[int, int]]:
        """The byte ranges of ``file`` that were sent, in request order, once every request
        in flight is answered and logged (``settle``: the client may have its bytes and
        move on before the server's thread logs them)."""
        self.settle()
        return [
            r.sent for r in self.requests if r.file == file and r.sent and r.sent[1] > r.sent[0]
        ]

    def files_sent(self) -> set[str]:
        self.settle()
        return {r.file for r in self.requests if r.file and r.sent and r.sent[1] > r.sent[0]}


def _etag(path: Path) -> str:
    """A stable stand-in for the Hub's ETag (sha256 of LFS files, git sha1 of others)."""
    stat = path.stat()
    digest = hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    return digest if path.name.endswith(LFS_SUFFIXES) else digest[:40]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # quiet: the FakeHub log is what tests read

    def do_HEAD(self):  # noqa: N802 - http.server's naming
        self._dispatch(body=False)

    def do_GET(self):  # noqa: N802
        self._dispatch(body=True)

    # --- routing -----------------------------------------------------------------------

    def _dispatch(self, body: bool) -> None:
        with self.fake.busy:
            self.fake.active += 1
            self.arrived = next(self.fake._arrivals)
        try:
            self._answer(body)
        finally:
            with self.fake.busy:
                self.fake.active -= 1
                self.fake.busy.notify_all()

    def _answer(self, body: bool) -> None:
        parts = urlsplit(self.path)
        self.query = parse_qs(parts.query)
        raw = parts.path
        self.host = (self.headers.get("Host") or "").split(":")[0]
        if raw == "/api/agent-harnesses":
            # huggingface_hub's daily fetch of AI-agent names for its user agent: not
            # embinspect's doing, so left out of the log.
            return self._error(404, None, "Not Found", log=False)
        where = "api" if raw.startswith("/api/models/") else None
        if match := _CDN.match(raw) or _RESOLVE.match(raw):
            where = unquote(match["file"])
        if where and (fault := self.fake.take(where, body=False)):
            return self._fault(fault)
        if raw.startswith("/api/models/"):
            return self._api(unquote(raw[len("/api/models/") :]))
        if match := _CDN.match(raw):
            return self._cdn(unquote(match["repo"]), match["commit"], unquote(match["file"]), body)
        if match := _RESOLVE.match(raw):
            repo, rev, file = (unquote(match[k]) for k in ("repo", "rev", "file"))
            return self._resolve(repo, rev, file, body)
        self._error(404, None, "Not Found")

    def _access(self, repo: Repo | None, repo_id: str, api: bool) -> bool:
        """Answer the errors the Hub gives before any file; True when the request may go on."""
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if repo is None or (repo.private and token not in repo.tokens):
            self._error(404, "RepoNotFound", "Repository not found")
            return False
        if repo.gated and not api and token not in repo.tokens:
            # The Hub: 401 when no token came, 403 when the token's account has no access.
            status = 403 if token else 401
            message = (
                f"Access to model {repo_id} is restricted and you are not in the authorized list."
            )
            self._error(status, "GatedRepo", message)
            return False
        return True

    def _api(self, rest: str) -> None:
        owner, name, *tree = rest.split("/")
        if tree[:1] == ["tree"] and len(tree) >= 2:
            return self._tree(f"{owner}/{name}", tree[1], "/".join(tree[2:]))
        repo_id, _, revision = rest.partition("/revision/")
        repo = self.fake.repos.get(repo_id)
        if not self._access(repo, repo_id, api=True):
            return
        commit = repo.resolve(revision or "main")
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        blobs = self.query.get("blobs") == ["True"] or self.query.get("blobs") == ["true"]
        siblings = []
        for name, path in repo.files(commit).items():
            entry: dict = {"rfilename": name}
            if blobs:
                entry.update(size=path.stat().st_size, blobId=_etag(path)[:40])
                if name.endswith(LFS_SUFFIXES):
                    size = path.stat().st_size
                    entry["lfs"] = {"sha256": _etag(path), "size": size, "pointerSize": 134}
            siblings.append(entry)
        document = {
            "_id": commit[:24],
            "id": repo_id,
            "modelId": repo_id,
            "sha": commit,
            "private": repo.private,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "tags": [],
            "siblings": siblings,
        }
        self._send(200, json.dumps(document).encode(), {"Content-Type": "application/json"})

    def _tree(self, repo_id: str, revision: str, folder: str) -> None:
        """The entries right under ``folder`` (not recursive), as the Hub's tree API lists them."""
        repo = self.fake.repos.get(repo_id)
        if not self._access(repo, repo_id, api=True):
            return
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        entries: dict[str, dict] = {}
        for name, path in repo.files(commit).items():
            if not name.startswith(prefix):
                continue
            head, below, _ = name[len(prefix) :].partition("/")
            if below:
                entries[prefix + head] = {"type": "directory", "oid": commit, "path": prefix + head}
            else:
                oid, size = _etag(path)[:40], path.stat().st_size
                entries[name] = {"type": "file", "oid": oid, "size": size, "path": name}
        if prefix and not entries:
            return self._error(404, "EntryNotFound", f"{folder} does not exist", commit)
        body = json.dumps(list(entries.values())).encode()
        self._send(200, body, {"Content-Type": "application/json"})

    def _resolve(self, repo_id: str, revision: str, file: str, body: bool) -> None:
        repo = self.fake.repos.get(repo_id)
        if not self._access(repo, repo_id, api=False):
            return
        commit = repo.resolve(revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        path = repo.files(commit).get(file)
        if path is None:
            return self._error(404, "EntryNotFound", f"{file} does not exist", commit)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{_etag(path)}"'}
        if file.endswith(LFS_SUFFIXES):
            # LFS: the Hub redirects to a CDN, and says the file's size and etag itself.
            cdn = f"http://localhost:{self.fake.port}/cdn/{repo_id}/{commit}/{quote(file)}"
            headers.update(
                {
                    "Location": cdn,
                    "X-Linked-Etag": f'"{_etag(path)}"',
                    "X-Linked-Size": str(path.stat().st_size),
                }
            )
            self._send(302, b"", headers)
            return
        self._send_file(path, file, headers, body)

    def _cdn(self, repo_id: str, commit: str, file: str, body: bool) -> None:
        repo = self.fake.repos.get(repo_id)
        path = repo.files(commit).get(file) if repo and commit in repo.commits else None
        if path is None:
            return self._error(404, None, "NoSuchKey")
        self._send_file(path, file, {"ETag": f'"{_etag(path)}"'}, body)

    # --- faults ------------------------------------------------------------------------

    def _fault(self, fault: Fault) -> None:
        headers: dict[str, str] = {}
        if fault.kind == "status":
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            return self._send(fault.status, b'{"error": "busy"}', headers, fault=fault.kind)
        if fault.kind == "redirect-loop":
            headers["Location"] = self.path
            return self._send(302, b"", headers, fault=fault.kind)
        if fault.kind == "payload":
            headers["Content-Type"] = "application/json"
            return self._send(200, fault.payload, headers, fault=fault.kind)
        if fault.kind == "silent":
            self.fake.wait(60)
            self.close_connection = True
            return self._log(0, fault=fault.kind)
        if fault.kind == "garbage":
            self._write(fault.payload)
            self.close_connection = True
            return self._log(0, fault=fault.kind)
        if fault.kind == "too-long":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(100 << 20))
            self.send_header("Connection", "close")
            self.end_headers()
            self._write(b"\0" * 65536)
            self.close_connection = True
            return self._log(200, fault=fault.kind)
        raise ValueError(f"not a request fault: {fault.kind}")

    def _send_faulty_file(
        self, fault: Fault, path: Path, file: str, headers: dict[str, str], start: int, stop: int
    ) -> None:
        """Answer a GET of ``file`` (asked: ``start..stop``) as ``fault`` says."""
        size = path.stat().st_size
        status = 206 if "Content-Range" in headers else 200
        if fault.kind == "ignore-range":
            start, stop, status = 0, size, 200
            headers.pop("Content-Range", None)
        elif fault.kind == "gzip":
            headers["Content-Encoding"] = "gzip"
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if fault.kind != "overlong":  # overlong: the body runs until the connection closes
            self.send_header("Content-Length", str(stop - start))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        sent = start
        with open(path, "rb") as handle:
            handle.seek(start)
            if fault.kind in {"stall", "pause"}:
                sent += self._write(handle.read(min(fault.after, stop - start)))
                if fault.kind == "pause":
                    self.fake.paused.set()
                self.fake.wait(60)
            elif fault.kind == "trickle":
                while sent < stop and not self.fake.wait(fault.interval):
                    if not self._write(handle.read(1)):
                        break
                    sent += 1
            else:
                while sent < stop:
                    written = self._write(handle.read(min(1 << 20, stop - sent)))
                    if not written:
                        break
                    sent += written
                if fault.kind == "overlong":  # past what was asked (past the file's end too)
                    self._write(handle.read(fault.extra).ljust(fault.extra, b"\0"))
        self._log(status, file, (start, sent), fault=fault.kind)

    def _write(self, data: bytes) -> int:
        """Send ``data``; 0 once the client has gone (it closed the connection)."""
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return 0
        return len(data)

    # --- responses ---------------------------------------------------------------------

    def _send_file(self, path: Path, file: str, headers: dict[str, str], body: bool) -> None:
        size = path.stat().st_size
        start, stop, status = 0, size, 200
        requested = self.headers.get("Range")
        if requested:
            match = _RANGE.match(requested.strip())
            if not match or int(match[1]) >= size:
                headers["Content-Range"] = f"bytes */{size}"
                return self._send(416, b"", headers)
            start = int(match[1])
            stop = min(int(match[2]) + 1, size) if match[2] else size
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        fault = self.fake.take(file, body=True, start=start) if body else None
        if fault is not None:
            headers["Accept-Ranges"] = "bytes"
            return self._send_faulty_file(fault, path, file, headers, start, stop)
        headers.update({"Accept-Ranges": "bytes", "Content-Length": str(stop - start)})
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        sent_stop = start
        if body:
            cut = self.fake.break_at.get(file)
            end = stop if cut is None or cut >= stop else max(cut, start)
            with open(path, "rb") as handle:
                handle.seek(start)
                while sent_stop < end:
                    chunk = handle.read(min(1 << 20, end - sent_stop))
                    self.wfile.write(chunk)
                    sent_stop += len(chunk)
            self.wfile.flush()
            self.close_connection = True  # cut short: the client sees fewer bytes than promised
        self._log(status, file, (start, sent_stop))

    def _send(
        self,
        status: int,
        payload: bytes,
        headers: dict[str, str],
        log: bool = True,
        fault: str | None = None,
    ) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.close_connection = True
        if log:
            self._log(status, fault=fault)

    def _error(
        self, status: int, code: str | None, message: str, commit: str | None = None, log=True
    ):
        headers = {"X-Error-Message": message, "Content-Type": "application/json"}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, json.dumps({"error": message}).encode(), headers, log)

    def _log(
        self,
        status: int,
        file: str | None = None,
        sent: tuple[int, int] | None = None,
        fault: str | None = None,
    ):
        self.fake.log(
            Request(
                method=self.command,
                host=self.host,
                path=unquote(urlsplit(self.path).path),
                range=self.headers.get("Range"),
                status=status,
                file=file,
                sent=sent,
                authorized="Authorization" in self.headers,
                accept_encoding=self.headers.get("Accept-Encoding"),
                fault=fault,
                arrived=self.arrived,
            )
        )
