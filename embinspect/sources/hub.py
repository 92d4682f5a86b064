"""A Hugging Face Hub repo, fetched a piece at a time: only what a command needs.

``HubRepo`` resolves the revision to a commit once (so every file comes from the same
commit), lists the repo's files, and then gets, on demand:

- small files (``config.json``, tokenizer files, the index) and whole shards through
  ``hf_hub_download``, into huggingface_hub's own cache where other tools find them;
- a safetensors header by two HTTP range requests (its 8-byte length, then the JSON):
  no tensor bytes;
- one tensor's bytes by a range request (its ``data_offsets``), written as a one-tensor
  safetensors file into huggingface_hub's assets cache
  (``$HF_HOME/assets/embinspect/models--org--name/<commit>/``), keyed by repo, commit,
  file and tensor.

Whether a tensor comes as a range or as its whole file is ``plan``'s decision: the whole
file when the tensor is at least ``WHOLE_FILE_SHARE`` of it (little to save, and the file
then serves transformers too), or with ``--full-download``; its range otherwise.

Every download goes to a temporary name and is renamed into place only once its length
checks out, so a download that broke off (or was interrupted: the name is removed on the
way out) is never taken for a complete one. Every request is bounded in time and size and
retried on 408, 429 and 5xx by ``hub_http``; a server that ignores ``Range`` is an error
naming ``--full-download``, never a reason to read a whole file into memory.

huggingface_hub's ``parse_safetensors_file_metadata`` is not used for headers: it always
reads the first 100,000 bytes (tensor data, for a small header) and does not return the
header's length, without which no tensor's absolute byte range can be known.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from huggingface_hub import (
    HfApi,
    cached_assets_path,
    constants,
    get_token,
    hf_hub_download,
    hf_hub_url,
    try_to_load_from_cache,
)
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    RevisionResolutionError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import (
    build_hf_headers,
    get_session,
    hf_raise_for_status,
)
from huggingface_hub.utils import logging as hf_logging
from huggingface_hub.utils import tqdm as hf_tqdm

from embinspect import __version__
from embinspect.errors import EmbinspectError, ModelError, NetworkError, Option
from embinspect.sources.cache import (
    FILE_LIST,
    HUB_LIBRARY,
    header_path,
    hub_repo_folder_name,
    range_path,
)
from embinspect.sources.files import temporary_beside, write_atomically
from embinspect.sources.hub_http import (
    ATTEMPTS,
    SMALL_FILE_BYTES,
    Compressed,
    ServerBusy,
    TooLong,
    Tripped,
    bounded,
    causes,
    with_retries,
)
from embinspect.sources.hub_options import TIMEOUT_VARIABLE, HubOptions, http_timeout
from embinspect.sources.safetensors_header import (
    MAX_HEADER_BYTES,
    read_header,
    refuse_pickle_message,
)
from embinspect.sources.tensor import PICKLE_MAGICS, TensorHeader
from embinspect.text import brief, terminal_line

# A tensor that is at least this share of its file comes as the whole file: a range would
# save little, and the whole file lands in the cache that transformers and others share.
# Below it (a 1 GB table in a 5 GB shard, MiniLM's table at 52% of its file), the range.
WHOLE_FILE_SHARE = 0.9

# Attempts at a tensor range whose connection broke off, each resuming where the last
# stopped (huggingface_hub retries whole-file downloads five times the same way).
RANGE_ATTEMPTS = 4
# Shard headers read at once: a 50-shard repo answers in a few round trips.
HEADER_WORKERS = 8
# The most of an error answer read to word the error (a 4xx body is a short JSON).
ERROR_BODY_BYTES = 1 << 20
_COMMIT = re.compile(r"[0-9a-f]{40}")

R = TypeVar("R")


@dataclass(frozen=True)
class TensorFetch:
    """What getting one tensor's bytes onto this machine takes.

    ``how`` is ``cached`` (here already, 0 bytes), ``range`` (the tensor's bytes only) or
    ``file`` (the whole file holding it); ``bytes`` is what would be downloaded.
    """

    tensor: str
    file: str
    how: str
    bytes: int


class RangeIgnored(Exception):
    """The server answered a range request with something else than that range."""

    def __init__(self, response: httpx2.Response) -> None:
        super().__init__(response.status_code)
        content_range = response.headers.get("Content-Range")
        self.answer = (
            "the whole file"
            if response.status_code == 200
            else f"{response.status_code}, Content-Range {brief(content_range or 'none')}"
        )


class RangeTooLong(Exception):
    """The server sent more bytes than the range asked for."""


class _Refused(Exception):
    """A 4xx answer too large to read for its wording."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class HubRepo:
    """One revision of a model repo on the Hub (or in the local cache when offline)."""

    def __init__(self, repo_id: str, revision: str | None, options: HubOptions) -> None:
        self.repo_id = repo_id
        self.asked = revision  # the branch, tag or commit asked for (None: the default branch)
        self.options = options
        self.timeout = http_timeout()  # EMBINSPECT_HTTP_TIMEOUT: a usage error before any request
        self.offline = options.offline or constants.is_offline_mode()
        self.where = f"{repo_id}@{revision}" if revision else repo_id
        self.endpoint = constants.ENDPOINT
        self._cache_dir = Path(options.cache_dir or constants.HF_HUB_CACHE).expanduser()
        # Whole-file downloads draw huggingface_hub's bar through this class: hidden without
        # `progress` (for this repo only: a notebook's other downloads keep theirs), and its
        # label, a file name from the repo, made safe for the terminal.
        self._bar_class = _bar_class(options.progress)
        # huggingface_hub warns on stderr as it retries or falls back to the cache; the
        # outcome is embinspect's to report, in one line.
        hf_logging.set_verbosity_error()
        self._api = HfApi(library_name="embinspect", library_version=__version__)
        # One commit for every file of this run, and refs/<revision> written for offline use.
        self.revision = self._api_call(
            f"revision {revision or 'main'}",
            lambda: self._api.resolve_revision(
                repo_id,
                revision=revision,
                cache_dir=options.cache_dir,
                local_files_only=self.offline,
            ),
        )
        self.commit = self.revision.resolved
        if not isinstance(self.commit, str) or not _COMMIT.fullmatch(self.commit):
            raise NetworkError(
                f"{self.where}: the Hub at {self.endpoint} named a commit that is not one "
                f"({brief(repr(self.commit))})"
            )
        # The layout is sources/cache's, which `embinspect cache` reads.
        self._assets = cached_assets_path(HUB_LIBRARY, hub_repo_folder_name(repo_id), self.commit)
        self.files = self._listing()  # file name -> size in bytes (None when not known)
        self._data_ends: dict[str, int] = {}

    # --- files -----------------------------------------------------------------------

    def _listing(self) -> dict[str, int | None]:
        """The repo's files at this commit: saved from the Hub's answer, or what the cache holds."""
        saved = self._assets / FILE_LIST
        try:
            files = json.loads(saved.read_text(encoding="utf-8"))
            if _is_listing(files):
                return files
        except (OSError, ValueError):
            pass  # not saved yet (or unreadable): ask the Hub again
        if not self.offline:
            info = self._api_call(
                "the file list",
                lambda: self._api.model_info(
                    self.repo_id, revision=self.commit, files_metadata=True
                ),
            )
            try:
                files = {s.rfilename: s.size for s in info.siblings or []}
            except (AttributeError, TypeError):
                files = None
            if not _is_listing(files):
                raise NetworkError(
                    f"{self.where}: the Hub at {self.endpoint} answered the file list with "
                    "something that is not one"
                )
            write_atomically(saved, json.dumps(files, indent=0).encode())
            return files
        # Offline, in a cache that other tools filled: what the snapshot holds is all we know.
        snapshot = self._cache_dir / repo_folder_name(repo_id=self.repo_id, repo_type="model")
        snapshot = snapshot / "snapshots" / self.commit
        if not snapshot.is_dir():
            raise ModelError(*self._offline_message("the repo"))
        return {
            p.relative_to(snapshot).as_posix(): None for p in snapshot.rglob("*") if p.is_file()
        }

    def cached_path(self, name: str) -> Path | None:
        """The file in huggingface_hub's cache, if it is there."""
        found = try_to_load_from_cache(
            self.repo_id, name, cache_dir=self.options.cache_dir, revision=self.commit
        )
        return Path(found) if isinstance(found, str) else None

    def fetch(self, name: str) -> Path | None:
        """A whole file through huggingface_hub's cache; None if the repo has no such file."""
        if name not in self.files:
            return None
        cached = self.cached_path(name)
        if cached is not None:
            return cached
        if self.offline:
            raise ModelError(*self._offline_message(name))
        size = self.files.get(name)
        # A small file (config.json) has a deadline; a large one (a shard) only must not trickle.
        small = size is not None and size <= SMALL_FILE_BYTES
        return Path(
            self._call(
                name,
                lambda: hf_hub_download(
                    self.repo_id,
                    name,
                    revision=self.revision,
                    cache_dir=self.options.cache_dir,
                    library_name="embinspect",
                    library_version=__version__,
                    tqdm_class=self._bar_class,
                ),
                metadata=small,
                limit=size,
            )
        )

    # --- safetensors headers ---------------------------------------------------------

    def header_is_local(self, name: str) -> bool:
        """Whether the file's header can be read without the network."""
        return self.cached_path(name) is not None or self._header_path(name).is_file()

    def headers(self, names: Iterable[str]) -> dict[str, dict[str, TensorHeader]]:
        """``{file: {tensor: TensorHeader}}``, the remote ones fetched a few at a time."""
        names = list(names)
        if len(names) <= 1:
            return {name: self.header(name) for name in names}
        with ThreadPoolExecutor(max_workers=min(HEADER_WORKERS, len(names))) as pool:
            return dict(zip(names, pool.map(self.header, names), strict=True))

    def header(self, name: str) -> dict[str, TensorHeader]:
        """The tensors of one safetensors file, from the cache or by range request."""
        cached = self.cached_path(name)
        if cached is None and self.options.full_download and not self.offline:
            cached = self.require(name)  # whole files, never ranges: the header too
        if cached is not None:
            tensors = read_header(cached, file_label=name)
        else:
            stub = self._header_path(name)
            if not stub.is_file():
                if self.offline:
                    raise ModelError(*self._offline_message(f"the header of {name}"))
                self._fetch_header(name, stub)
            tensors = self._read_stub(stub, name)
        self._data_ends[name] = max((t.offset + t.nbytes for t in tensors.values()), default=0)
        return tensors

    def _header_path(self, name: str) -> Path:
        return header_path(self._assets, name)

    def _fetch_header(self, name: str, stub: Path) -> None:
        url = self._url(name)
        prefix = self._read_range(name, url, 0, 8)
        if prefix.startswith(PICKLE_MAGICS):
            raise ModelError(refuse_pickle_message(f"{self.where}/{name}"))
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else 0
        size = self.size(name)
        body = b""
        if 0 < length <= MAX_HEADER_BYTES and (size is None or 8 + length <= size):
            body = self._read_range(name, url, 8, 8 + length)
        # Checked before it is kept: a bad header is reported, never cached.
        stub.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_beside(stub)
        try:
            tmp.write_bytes(prefix + body)
            self._read_stub(tmp, name)
            os.replace(tmp, stub)
        finally:
            tmp.unlink(missing_ok=True)

    def _read_stub(self, stub: Path, name: str) -> dict[str, TensorHeader]:
        size = self.size(name)
        try:
            return read_header(stub, file_label=name, file_size=size)
        except ModelError as err:
            # The stub's path means nothing to the user: name the file on the Hub instead.
            raise ModelError(err.message.replace(str(stub), f"{self.where}/{name}")) from None

    def size(self, name: str) -> int | None:
        """The file's size: from the Hub's file list, else where its last tensor ends."""
        listed = self.files.get(name)
        if listed is not None:
            return listed
        cached = self.cached_path(name)
        if cached is not None:
            return cached.stat().st_size
        return self._data_ends.get(name)

    # --- tensor bytes ----------------------------------------------------------------

    def plan(self, header: TensorHeader) -> TensorFetch:
        """How the tensor's bytes would come: cached already, as a range, or as its file."""
        name, file = header.name, header.file
        if self.cached_path(file) is not None:
            return TensorFetch(name, file, "cached", 0)
        size = self.size(file) or header.offset + header.nbytes
        if self.options.full_download:
            return TensorFetch(name, file, "file", size)
        if self._open_range(header) is not None:
            return TensorFetch(name, file, "cached", 0)
        if header.nbytes >= WHOLE_FILE_SHARE * size:
            return TensorFetch(name, file, "file", size)
        return TensorFetch(name, file, "range", header.nbytes)

    def tensor_file(self, header: TensorHeader) -> tuple[Path, TensorHeader]:
        """A local safetensors file holding the tensor, and the tensor's header in that file.

        Either the whole file (from huggingface_hub's cache) with ``header`` unchanged, or
        a one-tensor file of its range whose header places the bytes in that file.
        """
        how = self.plan(header).how
        if how == "cached":
            whole = self.cached_path(header.file)
            if whole is not None:
                return whole, header
        elif how == "range":
            # A server that ignores Range is an error naming --full-download (RangeIgnored).
            self._download_range(header)
        if how == "file":
            return self.require(header.file), header
        local = self._open_range(header)
        if local is None:
            raise ModelError(*self._offline_message(f"{header.name} (bytes of {header.file})"))
        return self._range_path(header), local

    def require(self, name: str) -> Path:
        path = self.fetch(name)
        if path is None:
            raise ModelError(f"{self.where}: file {name} is missing from the repo")
        return path

    def _range_path(self, header: TensorHeader) -> Path:
        return range_path(self._assets, header.file, header.name)

    def _open_range(self, header: TensorHeader) -> TensorHeader | None:
        """The tensor's header in its range file, if that file is there and complete."""
        path = self._range_path(header)
        if not path.is_file():
            return None
        try:
            local = read_header(path, file_label=header.file).get(header.name)
        except ModelError:
            return None
        complete = (
            local is not None
            and (local.dtype, local.shape, local.nbytes)
            == (header.dtype, header.shape, header.nbytes)
            and path.stat().st_size == local.offset + local.nbytes
        )
        return local if complete else None

    def _download_range(self, header: TensorHeader) -> None:
        """Fetch the tensor's bytes into its range file: a one-tensor safetensors file."""
        if self.offline:
            raise ModelError(*self._offline_message(f"{header.name} (bytes of {header.file})"))
        dest = self._range_path(header)
        dest.parent.mkdir(parents=True, exist_ok=True)
        start, stop = header.offset, header.offset + header.nbytes
        url = self._url(header.file)
        what = f"{header.name} (bytes of {header.file})"
        tmp = temporary_beside(dest)
        try:  # the temporary file goes on any way out: an error, Ctrl-C, SIGTERM's exception
            with (
                open(tmp, "wb") as out,
                self._bar(header) as bar,
                self._errors(what),
                bounded(self.timeout, metadata=False),
            ):
                out.write(_one_tensor_header(header, f"{self.repo_id}@{self.commit}", start, stop))
                received, failures = 0, 0

                def attempt() -> None:
                    nonlocal received
                    for chunk in self._stream_range(url, start + received, stop, what):
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))

                while received < header.nbytes:
                    try:
                        with_retries(attempt, self.timeout)
                    except Tripped:
                        raise  # a stall, a trickle, a busy server: worded by _errors
                    except (httpx2.TransportError, _ShortRange):
                        # Resume where the broken connection stopped, as huggingface_hub does.
                        failures += 1
                        if failures >= RANGE_ATTEMPTS:
                            raise NetworkError(
                                f"{self.where}: the connection broke off {failures} times while "
                                f"fetching {header.name} from {header.file} ({received:,} of "
                                f"{header.nbytes:,} bytes); nothing partial was kept: run again"
                            ) from None
                        time.sleep(min(0.5 * failures, self.timeout))
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        if self._open_range(header) is None:
            raise ModelError(f"{self.where}: the range file of {header.name} does not check out")

    def _stream_range(self, url: str, start: int, stop: int, what: str) -> Iterator[bytes]:
        """The bytes ``start..stop-1`` of a file, in chunks: exactly those, or an exception.

        Raises RangeIgnored when the server answers anything but that range (a 200 with the
        whole file is closed unread), RangeTooLong as soon as it sends more than asked, and
        _ShortRange when it closes the response early. The time each takes is hub_http's.
        """
        headers = {
            **self._http_headers(),
            "Range": f"bytes={start}-{stop - 1}",
            # A compressed body's length says nothing about the range (hub_http refuses one).
            "Accept-Encoding": "identity",
        }
        with get_session().stream("GET", url, headers=headers) as response:
            if response.status_code >= 400:
                _raise_for_status(response)
            content_range = response.headers.get("Content-Range", "")
            if response.status_code != 206 or not content_range.startswith(
                f"bytes {start}-{stop - 1}/"
            ):
                raise RangeIgnored(response)
            expected, count = stop - start, 0
            length = response.headers.get("Content-Length", "").strip()
            if length.isdigit() and int(length) > expected:
                raise RangeTooLong(what)
            # As the bytes arrive: a chunk held back for size would be lost if the connection
            # drops, and one past the range is refused before the next is read.
            for chunk in response.iter_raw():
                count += len(chunk)
                if count > expected:
                    raise RangeTooLong(what)
                yield chunk
            if count < expected:
                raise _ShortRange(url)

    def _read_range(self, name: str, url: str, start: int, stop: int) -> bytes:
        """A few bytes of a file (a header), in one request under the metadata deadline."""
        what = f"the header of {name}"
        return self._call(what, lambda: b"".join(self._stream_range(url, start, stop, what)))

    # --- plumbing --------------------------------------------------------------------

    def _call(
        self, what: str, call: Callable[[], R], *, metadata: bool = True, limit: int | None = None
    ) -> R:
        """``call()`` bounded in time and size (hub_http), retried on 408/429/5xx, errors
        worded; ``limit``: the most bytes a whole file may bring (its listed size)."""
        with self._errors(what), bounded(self.timeout, metadata=metadata, limit=limit):
            return with_retries(call, self.timeout)

    def _api_call(self, what: str, call: Callable[[], R]) -> R:
        """A model API call: as ``_call``, and an answer that is not the Hub's JSON is exit 5."""
        try:
            return self._call(what, call)
        except (EmbinspectError, HFValidationError):
            raise  # worded already; or a repo id or revision huggingface_hub refuses to send
        except (ValueError, TypeError, KeyError, AttributeError, AssertionError) as err:
            # huggingface_hub parses the answer itself: `{not json` is a JSONDecodeError there.
            raise NetworkError(
                f"{self.where}: the Hub at {self.endpoint} sent something that is not its JSON "
                f"for {what} ({type(err).__name__}: {brief(err)})"
            ) from None

    def _url(self, name: str) -> str:
        return hf_hub_url(self.repo_id, name, revision=self.commit)

    def _http_headers(self) -> dict[str, str]:
        # The token (HF_TOKEN, or the one `hf auth login` saved) goes in, as for every
        # huggingface_hub request; it is never printed.
        return build_hf_headers(library_name="embinspect", library_version=__version__)

    @contextmanager
    def _bar(self, header: TensorHeader) -> Iterator[hf_tqdm]:
        bar = self._bar_class(
            total=header.nbytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"{header.name} ({header.file})",
        )
        try:
            yield bar
        finally:
            bar.close()

    def _offline_message(self, what: str) -> tuple[str | Option, ...]:
        return (
            f"{self.where}: {what} is not in the local Hugging Face cache, and offline mode is "
            "on (",
            Option("offline"),
            " or HF_HUB_OFFLINE); run the same command once online to fetch it",
        )

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn huggingface_hub's and httpx's exceptions into one line for the user."""
        try:
            yield
        except EmbinspectError:
            raise
        except RangeIgnored as err:
            raise NetworkError(
                f"{self.where}: the server at {self.endpoint} ignored the byte range asked for "
                f"{what} (it answered {err.answer}); run again with ",
                Option("full-download"),
                " to fetch whole files instead",
            ) from None
        except RangeTooLong:
            raise NetworkError(
                f"{self.where}: the server sent more bytes than asked for {what}; nothing was kept"
            ) from None
        except _Refused as err:
            raise ModelError(f"{self.where}: the Hub refused {what} ({err.status})") from None
        except GatedRepoError as err:
            raise ModelError(self._gated_message(err)) from None
        except RevisionNotFoundError:
            raise ModelError(
                f"{self.where}: no such revision (branch, tag or commit) in {self.repo_id}"
            ) from None
        except RepositoryNotFoundError:
            raise ModelError(
                f"{self.repo_id}: no such local path, and no such Hub repo at {self.endpoint} "
                "(or it is private: set HF_TOKEN to a token that can read it)"
            ) from None
        except RemoteEntryNotFoundError:
            raise ModelError(f"{self.where}: {what} is not in the repo") from None
        except (RevisionResolutionError, LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
            if self.offline:
                raise ModelError(*self._offline_message(what)) from None
            raise NetworkError(*self._network_message(what, err)) from None
        except HfHubHTTPError as err:
            status = err.response.status_code if err.response is not None else 0
            if status >= 500 or status == 429:
                raise NetworkError(
                    f"{self.where}: the Hub answered {status} for {what}; try again later"
                ) from None
            raise ModelError(f"{self.where}: the Hub refused {what} ({status})") from None
        # After HfHubHTTPError, which is one too: redirect loops, bad headers, guards.
        except (httpx2.HTTPError, httpx2.InvalidURL, httpx2.StreamError) as err:
            raise NetworkError(*self._network_message(what, err)) from None
        except OSError as err:
            if any(isinstance(e, httpx2.HTTPError) for e in causes(err)):
                raise NetworkError(*self._network_message(what, err)) from None
            if "Consistency check failed" not in str(err):
                raise
            # huggingface_hub's size check on a whole-file download: nothing was kept.
            raise NetworkError(
                f"{self.where}: the download of {what} ended short; nothing partial was kept: "
                "run again"
            ) from None

    def _network_message(self, what: str, err: BaseException) -> tuple[str | Option, ...]:
        chain = list(causes(err))
        transport = next((e for e in chain if isinstance(e, httpx2.HTTPError)), err)
        reason = type(transport).__name__
        detail = brief(transport)  # the library's words, with the server's text bounded
        if detail and detail != reason:
            reason = f"{reason}: {detail}"
        if isinstance(transport, ServerBusy):
            return (
                f"{self.where}: the Hub answered {transport.status} for {what}, {ATTEMPTS} "
                "times; try again later",
            )
        if isinstance(transport, Compressed):
            return (
                f"{self.where}: the server sent {what} compressed ({brief(transport)}), though "
                "asked for the bytes as stored; nothing was kept",
            )
        if isinstance(transport, TooLong):
            return (
                f"{self.where}: the Hub at {self.endpoint} sent too long an answer for {what} "
                f"({brief(transport)}); nothing was kept",
            )
        if isinstance(transport, (Tripped, httpx2.TimeoutException)):
            return (
                f"{self.where}: the Hub at {self.endpoint} was too slow fetching {what} "
                f"({reason}; {TIMEOUT_VARIABLE}={self.timeout:g}); nothing partial "
                "was kept: run again",
            )
        if isinstance(transport, httpx2.TooManyRedirects):
            return (f"{self.where}: the Hub at {self.endpoint} redirected {what} in a loop",)
        if not isinstance(transport, httpx2.TransportError):
            return (
                f"{self.where}: the Hub at {self.endpoint} sent an unreadable answer for "
                f"{what} ({reason})",
            )
        if isinstance(transport, (httpx2.RemoteProtocolError, httpx2.ReadError)):
            return (
                f"{self.where}: the connection to the Hub broke off while fetching {what} "
                f"({reason}); nothing partial was kept: run again",
            )
        return (
            f"{self.where}: cannot reach the Hub at {self.endpoint} to fetch {what} ({reason}); "
            "check the network (HF_ENDPOINT), or use ",
            Option("offline"),
            " for what is cached",
        )

    def _gated_message(self, err: GatedRepoError) -> str:
        page = f"{self.endpoint}/{self.repo_id}"
        status = err.response.status_code if err.response is not None else None
        if status == 403 or get_token() is not None:
            return (
                f"{self.repo_id}: gated repo, and the token sent (HF_TOKEN, or `hf auth login`) "
                f"has no access yet: accept the conditions at {page} with that account, wait "
                "for approval, and run again"
            )
        return (
            f"{self.repo_id}: gated repo: accept its conditions at {page}, then set HF_TOKEN to "
            "a read token of that account (embinspect reads HF_TOKEN, or `hf auth login`'s token)"
        )


class _ShortRange(Exception):
    """The server closed a range response before its last byte."""


def _raise_for_status(response: httpx2.Response) -> None:
    """huggingface_hub's error for a 4xx answer, its body read only when it is short."""
    length = response.headers.get("Content-Length", "").strip()
    if not (length.isdigit() and int(length) <= ERROR_BODY_BYTES):
        raise _Refused(response.status_code)
    response.read()
    hf_raise_for_status(response)


def _is_listing(files: object) -> bool:
    """Whether ``files`` is a file list as saved: ``{name: size in bytes or None}``."""
    return isinstance(files, dict) and all(
        isinstance(name, str)
        and (size is None or (isinstance(size, int) and not isinstance(size, bool) and size >= 0))
        for name, size in files.items()
    )


def _one_tensor_header(header: TensorHeader, source: str, start: int, stop: int) -> bytes:
    """The 8-byte length and JSON header of a safetensors file holding one tensor's bytes.

    The JSON is padded with spaces to a multiple of 8 bytes, as safetensors writes it, so
    the tensor's bytes start aligned.
    """
    document = {
        "__metadata__": {"source": f"{source}/{header.file}", "bytes": f"{start}-{stop}"},
        header.name: {
            "dtype": header.dtype,
            "shape": list(header.shape),
            "data_offsets": [0, header.nbytes],
        },
    }
    raw = json.dumps(document, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


# A label's length on a download bar: the tensor and file names come from the repo.
BAR_LABEL = 80


def _bar_class(progress: bool) -> type[hf_tqdm]:
    """huggingface_hub's tqdm, hidden unless ``progress``, its label one escaped line."""

    class Bar(hf_tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("desc") is not None:
                kwargs["desc"] = terminal_line(brief(kwargs["desc"], BAR_LABEL))
            if not progress:
                kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Bar
