"""Where a checkpoint's files are: a local folder, a single file (safetensors or GGUF), an
Ollama model, or a Hugging Face repo.

``locate(model)`` answers which safetensors files hold the weights and gives a way to
get any other file of the checkpoint (config, tokenizer) by name, a shard's header, and
a local file holding a tensor's bytes. For a Hub repo (``embinspect.sources.hub``) each is
fetched only when asked for, so a command gets the JSON files, the headers and the one
tensor it reads, and nothing else.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from embinspect.errors import ModelError, NetworkError, Option
from embinspect.sources.exported import (
    ExportedTable,
    is_npy,
    open_npy,
    open_safetensors_with_vocabulary,
)
from embinspect.sources.files import load_json
from embinspect.sources.gguf_file import GgufFile, is_gguf, read_gguf
from embinspect.sources.hub_options import HubOptions
from embinspect.sources.safetensors_header import read_header, refuse_pickle_message
from embinspect.sources.tensor import GGUF_MAGIC, PICKLE_MAGICS, TensorHeader
from embinspect.sources.word_vectors import (
    GLOVE,
    WORD2VEC_BINARY,
    WORD2VEC_TEXT,
    WordVectorCache,
    WordVectors,
    WordVectorShape,
    load_located,
    locate_word_vectors,
    read_start,
    sniff_word_vectors,
)

if TYPE_CHECKING:
    import numpy as np

    from embinspect.sources.hub import HubRepo

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
OLLAMA_PREFIX = "ollama:"

# owner/name or name, as the Hub accepts them (letters, digits, '-', '_', '.').
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")


@dataclass
class CheckpointFiles:
    """The files of one checkpoint.

    ``weight_files`` are names relative to the checkpoint root, as they appear in an
    index's ``weight_map``. ``weight_map`` is None when there is no index (one file).
    """

    model: str
    kind: str  # "directory", "file", "hub", "gguf", "word-vectors" or "exported"
    weight_files: list[str]
    weight_map: dict[str, str] | None = None
    index_total_size: int | None = None
    _fetch: Callable[[str], Path | None] = field(default=lambda name: None, repr=False)
    _is_present: Callable[[str], bool] = field(default=lambda name: False, repr=False)
    hub: HubRepo | None = field(default=None, repr=False)  # set for a Hub repo
    gguf: GgufFile | None = field(default=None, repr=False)  # set for a GGUF file
    word_vectors: WordVectorFile | None = field(default=None, repr=False)  # for a word-vector file
    exported: ExportedTable | None = field(default=None, repr=False)  # what `export` wrote

    def optional(self, name: str) -> Path | None:
        """Local path of a checkpoint file, fetching it if remote; None if it does not exist."""
        return self._fetch(name)

    def require(self, name: str) -> Path:
        path = self._fetch(name)
        if path is None:
            raise ModelError(f"{self.model}: file {name} is missing from the checkpoint")
        return path

    def is_present(self, name: str) -> bool:
        """True when the file (for a Hub shard: its header) is on this machine already."""
        return self._is_present(name)

    @property
    def can_download(self) -> bool:
        """Whether a file not on this machine can still be fetched (a Hub repo, online)."""
        return self.hub is not None and not self.hub.offline

    def read_headers(self, names: list[str]) -> dict[str, dict[str, TensorHeader]]:
        """``{file: {tensor: TensorHeader}}`` for safetensors files of the checkpoint."""
        if self.hub is not None:
            return self.hub.headers(names)  # by range request, no tensor bytes
        if self.gguf is not None:
            return {self.weight_files[0]: self.gguf.tensors}  # read when the file was located
        if self.word_vectors is not None:
            return {self.weight_files[0]: {VECTORS: self.word_vectors.header}}
        if self.exported is not None:
            return {self.weight_files[0]: {self.exported.header.name: self.exported.header}}
        headers = {}
        for name in names:
            path = self.optional(name)
            if path is None:
                raise ModelError(
                    f"{self.model}: shard {name} is named in the index's weight_map but is "
                    "missing (an unfinished download?)"
                )
            headers[name] = read_header(path, file_label=name)
        return headers

    def tensor_file(self, header: TensorHeader) -> tuple[Path, TensorHeader]:
        """A local safetensors file holding the tensor's bytes, and its header there.

        For a local checkpoint, the shard itself and ``header``; for a Hub repo, the
        shard or a file of the tensor's byte range (``HubRepo.tensor_file``).
        """
        if self.hub is not None:
            return self.hub.tensor_file(header)
        return self.require(header.file), header

    def loaded_rows(self, header: TensorHeader) -> np.ndarray | None:
        """The rows of a table held in memory rather than mapped from a file: a word-vector
        file's, parsed on first use. None for every other table."""
        if self.word_vectors is not None and header.name == VECTORS:
            return self.word_vectors.load().vectors
        return None

    def read_json(self, name: str) -> dict | None:
        path = self.optional(name)
        if path is None:
            return None
        return load_json(path)


# The one table of a word-vector file, as it is named in results and notes.
VECTORS = "vectors"
WORD_VECTOR_SUFFIXES = (".txt", ".vec")
FASTTEXT_MAGIC = (793712314).to_bytes(4, "little")  # fastText's FASTTEXT_FILEFORMAT_MAGIC_INT32
WORD_VECTOR_FORMATS = {
    WORD2VEC_TEXT: "word2vec text (fastText .vec)",
    WORD2VEC_BINARY: "word2vec binary",
    GLOVE: "GloVe text (no header)",
}


@dataclass
class WordVectorFile:
    """A word-vector file: its shape from the header (cheap, for ``info``), and its words
    and rows, parsed once when a command first needs them; ``cache``: where that parse is
    kept, and read back from on later runs (``word_vectors.WordVectorCache``)."""

    path: Path
    shape: WordVectorShape
    cache: WordVectorCache | None = field(default=None, repr=False)
    _loaded: WordVectors | None = field(default=None, repr=False)

    @property
    def header(self) -> TensorHeader:
        rows, dim = self.shape.rows, self.shape.dim
        return TensorHeader(VECTORS, "F32", (rows, dim), rows * dim * 4, self.path.name)

    def load(self) -> WordVectors:
        if self._loaded is None:
            cache = self.cache or WordVectorCache(self.path)
            self._loaded = load_located(self.path, self.shape, cache)
        return self._loaded


def locate(
    model: str, revision: str | None = None, hub: HubOptions | None = None
) -> CheckpointFiles:
    """Resolve MODEL (folder, ``.safetensors`` file, or Hub repo id) to its files.

    ``hub`` says how to reach the Hub (cache folder, offline, whole files); local paths
    ignore it.
    """
    if not model.strip():
        raise ModelError(
            "MODEL is empty: give a folder, a .safetensors or .gguf file, ollama:NAME or a Hub "
            "repo id"
        )
    try:
        return _locate(model, revision, hub)
    except PermissionError as err:
        raise ModelError(f"{err.filename or model}: permission denied") from None


def _locate(model: str, revision: str | None, hub: HubOptions | None) -> CheckpointFiles:
    if model.startswith(OLLAMA_PREFIX):
        from embinspect.sources.ollama import ollama_blob

        if revision:
            raise ModelError(
                f"{model}: ", Option("revision"), " applies to Hub repos; give ollama:NAME:TAG"
            )
        return _locate_gguf(model, ollama_blob(model[len(OLLAMA_PREFIX) :]))
    path = _local_path(model)
    kind = _file_type(model, path)
    if kind == "directory":
        if revision:
            raise ModelError(
                f"{model}: ", Option("revision"), " applies to Hub repos, not to a local folder"
            )
        return _locate_directory(model, path)
    if kind == "file":
        if revision:
            raise ModelError(
                f"{model}: ", Option("revision"), " applies to Hub repos, not to a local file"
            )
        return _locate_file(model, path)
    if kind is not None:
        # Opening a FIFO or a terminal to sniff its first bytes would wait forever.
        raise ModelError(f"{model}: is a {kind}, not a file or folder")
    if _looks_like_path(model, path):
        raise ModelError(f"{model}: no such file or directory")
    if _REPO_ID.match(model):
        # Both a relative path and a repo id: the path was tried first (not there).
        try:
            return _locate_hub(model, revision, hub)
        except NetworkError as err:
            raise NetworkError(
                f"{model}: no such file or directory here, and as a Hub repo: ", *err.parts
            ) from None
    raise ModelError(f"{model}: no such file or directory, and not a Hugging Face repo id")


# Names that can only be paths: what embinspect reads (and refuses: pickles), and the
# compressions a downloaded word-vector file comes in. A Hub repo id never ends so.
PATH_SUFFIXES = (
    ".safetensors",
    ".json",
    ".gguf",
    *WORD_VECTOR_SUFFIXES,
    *PICKLE_SUFFIXES,
    ".gz",
    ".bz2",
    ".xz",
    ".zip",
    ".npy",
    ".npz",
)


def _local_path(model: str) -> Path:
    """MODEL as a local path, ``~`` and ``~user`` expanded."""
    try:
        return Path(model).expanduser()
    except RuntimeError:  # no home folder, or no such user
        user = model[1:].split("/", 1)[0]
        raise ModelError(
            f"{model}: no such file or directory (~{user}: no such user or home folder)"
        ) from None


def _file_type(model: str, path: Path) -> str | None:
    """ "directory", "file", what else stands at ``path`` (a FIFO, a socket, a device), or
    None when nothing does; never opens it."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise ModelError(f"{model}: permission denied") from None
    except ValueError:  # a NUL byte: no path can hold one
        raise ModelError(f"{model!r}: no such file or directory (a path holds no NUL)") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ModelError(f"{model}: a symbolic link loop (too many levels of links)") from None
        if err.errno == errno.ENAMETOOLONG:
            raise ModelError(f"{_shown_path(model)}: file name too long") from None
        raise ModelError(f"{model}: cannot read ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _shown_path(model: str, limit: int = 80) -> str:
    """A path for a one-line message, its middle cut when long."""
    if len(model) <= limit:
        return model
    return f"{model[: limit // 2]}...{model[-limit // 2 :]} ({len(model):,} characters)"


def _looks_like_path(model: str, path: Path) -> bool:
    """Whether MODEL can only be a local path: it starts with ``.``, ``/`` or ``~``, ends
    in a suffix embinspect reads, or names something inside a local folder
    (``models/minilm`` where ``models/`` exists)."""
    if model.startswith((".", "/", "~", "\\")) or model.lower().endswith(PATH_SUFFIXES):
        return True
    return "/" in model.rstrip("/") and path.parent.is_dir()


def _locate_directory(model: str, root: Path) -> CheckpointFiles:
    def fetch(name: str) -> Path | None:
        candidate = root / name
        return candidate if candidate.is_file() else None

    def present(name: str) -> bool:
        return (root / name).is_file()

    index_path = root / INDEX_FILE
    if index_path.is_file():
        return _from_index(model, "directory", load_json(index_path), index_path, fetch, present)
    if (root / SINGLE_FILE).is_file():
        return CheckpointFiles(model, "directory", [SINGLE_FILE], None, None, fetch, present)
    others = sorted(p.name for p in root.glob("*.safetensors"))
    if others:
        return CheckpointFiles(model, "directory", others, None, None, fetch, present)
    pickles = sorted(p.name for p in root.iterdir() if p.name.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise ModelError(refuse_pickle_message(root / pickles[0]))
    ggufs = sorted(p.name for p in root.glob("*.gguf"))
    if ggufs:
        raise ModelError(
            f"{model}: no .safetensors weights in this folder, but GGUF files: give one as "
            f"MODEL ({root / ggufs[0]})"
        )
    raise ModelError(
        f"{model}: no .safetensors weights in this folder (expected {SINGLE_FILE} or {INDEX_FILE})"
    )


def _locate_file(model: str, path: Path) -> CheckpointFiles:
    compression = _compression(path)
    if compression is not None:
        return _locate_compressed(model, path, compression)
    if path.suffix.lower() in _COMPRESSED_SUFFIXES and sniff_word_vectors(path) is None:
        # Named so but not so (a browser may save a .gz decompressed, named as it was):
        # read by its bytes, as every file is, only when they are word vectors.
        name = _COMPRESSED_SUFFIXES[path.suffix.lower()]
        raise ModelError(f"{path}: named {path.suffix} but not {name} data (nor word vectors)")
    if path.suffix == ".gguf" or is_gguf(path):
        return _locate_gguf(model, path)
    exported = _locate_exported(model, path)
    if exported is not None:
        return exported
    # Before the pickle check: word2vec binaries are often named .bin. Sniffing only reads
    # bytes; a pickle never looks like a "ROWS DIM" header. A .txt or .vec file that does
    # not sniff as one is read anyway, for the reader to name its first bad line.
    if path.suffix in WORD_VECTOR_SUFFIXES or sniff_word_vectors(path) is not None:
        return _locate_word_vectors(model, path)
    if _starts_with(path, FASTTEXT_MAGIC):
        raise ModelError(
            f"{path}: is a fastText model (.bin); embinspect reads its vectors as text: give "
            "the .vec file fastText writes beside it"
        )
    if path.suffix == ".bin" and not any(_starts_with(path, m) for m in PICKLE_MAGICS):
        # Refused all the same (a .bin is never unpickled), but named for what it may be.
        raise ModelError(
            f"{path}: not a word2vec binary (no 'ROWS DIM' header line) and no zip or pickle "
            "either; an old fastText .bin? give the .vec file fastText writes beside it"
        )
    if path.name.endswith(PICKLE_SUFFIXES):
        raise ModelError(refuse_pickle_message(path))
    return _single_file(model, "file", path)


@dataclass(frozen=True)
class _Compression:
    name: str  # as users call it: "gzip", "bzip2"
    suffix: str  # what such a file is usually named
    undo: str  # the command that decompresses it, keeping the original


# Compressed files by their first bytes. A zip is told by its name only: torch.save's
# checkpoints are zip files too, refused as pickles.
_COMPRESSIONS = {
    b"\x1f\x8b": _Compression("gzip", ".gz", "gunzip -k"),
    b"\xfd7zXZ\x00": _Compression("xz", ".xz", "unxz -k"),
    b"\x28\xb5\x2f\xfd": _Compression("zstd", ".zst", "unzstd"),
}
_BZIP2 = _Compression("bzip2", ".bz2", "bunzip2 -k")
_ZIP = _Compression("zip", ".zip", "unzip")
# bzip2: "BZh", the block size digit, then a block's or the end's magic.
_BZIP2_START = re.compile(rb"BZh[1-9](?:\x31\x41\x59\x26\x53\x59|\x17\x72\x45\x38\x50\x90)")
_ZIP_MAGIC = b"PK\x03\x04"
_COMPRESSED_SUFFIXES = {c.suffix: c.name for c in (*_COMPRESSIONS.values(), _BZIP2, _ZIP)}


def _compression(path: Path) -> _Compression | None:
    """How the file is compressed, by its first bytes (a zip by its name), or None."""
    with open(path, "rb") as handle:
        start = handle.read(10)
    for magic, compression in _COMPRESSIONS.items():
        if start.startswith(magic):
            return compression
    if _BZIP2_START.match(start):
        return _BZIP2
    if path.suffix.lower() == ".zip" and start.startswith(_ZIP_MAGIC):
        return _ZIP
    return None


def _locate_compressed(model: str, path: Path, compression: _Compression) -> CheckpointFiles:
    """A gzip-compressed word-vector file is read as it is (decompressed as a stream);
    everything else compressed is refused, naming the compression and what is inside
    when its name or first bytes say."""
    name = path.name
    inner = name[: -len(compression.suffix)] if name.lower().endswith(compression.suffix) else ""
    suffix = Path(inner).suffix.lower()
    if compression.name == "gzip":
        sniffed = sniff_word_vectors(path)
        if sniffed is not None or suffix in WORD_VECTOR_SUFFIXES:
            # A .txt.gz or .vec.gz that does not sniff is read all the same, for the reader
            # to name its first bad line (as for a plain file).
            return _locate_word_vectors(model, path)
        what = _gzip_inside(path, suffix)
        raise ModelError(
            f"{path}: gzip-compressed {what}; embinspect reads gzip only for word-vector "
            f"files (.txt.gz, .vec.gz, .bin.gz): decompress it first ({compression.undo} "
            f"{name})"
        )
    if compression.name == "zip":
        raise ModelError(
            f"{path}: a zip archive; embinspect reads no archives: unzip it and give one of "
            "its files as MODEL"
        )
    what = f"{suffix} file" if suffix else "file"
    raise ModelError(
        f"{path}: {compression.name}-compressed {what}; embinspect reads no {compression.name} "
        f"(of compressed files, only gzip word vectors: .txt.gz, .vec.gz, .bin.gz): "
        f"decompress it first ({compression.undo} {name})"
    )


def _gzip_inside(path: Path, suffix: str) -> str:
    """What a gzip file that is no word-vector file holds, for its refusal: by the first
    bytes inside when they say, else by the name inside."""
    try:
        start = read_start(path, 16)
    except (OSError, EOFError, zlib.error):
        return "data that does not decompress (corrupt or cut short)"
    if start.startswith(GGUF_MAGIC):
        return "GGUF file"
    if start.startswith(PICKLE_MAGICS):
        return "pickle (never unpickled)"
    if len(start) > 8 and start[8:9] == b"{":  # an 8-byte header length, then its JSON
        return "safetensors file"
    if suffix == ".bin":
        return ".bin file that is no word2vec binary (no 'ROWS DIM' header line)"
    return f"{suffix} file" if suffix else "file of unknown content"


def _single_file(model: str, kind: str, path: Path) -> CheckpointFiles:
    """A checkpoint that is one file: it carries no config or tokenizer files beside it, so
    only the file itself can be fetched."""
    return CheckpointFiles(
        model,
        kind,
        [path.name],
        _fetch=lambda name: path if name == path.name else None,
        _is_present=lambda name: name == path.name,
    )


def _locate_gguf(model: str, path: Path) -> CheckpointFiles:
    """A GGUF file: its header (metadata and tensor layout) is read once, here; config and
    tokenizer come from its metadata, so no other file is ever fetched."""
    files = _single_file(model, "gguf", path)
    files.gguf = read_gguf(path)
    return files


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(magic)) == magic


def _locate_exported(model: str, path: Path) -> CheckpointFiles | None:
    """A table ``embinspect export`` wrote: a ``.npy`` file (and ``NAME.vocab.json``), or a
    ``.safetensors`` file whose metadata holds its vocabulary; None for any other file."""
    if path.suffix.lower() == ".npy" or is_npy(path):
        table = open_npy(path)
    elif path.suffix.lower() == ".safetensors":
        found = open_safetensors_with_vocabulary(path)
        if found is None:
            return None
        table = found
    else:
        return None
    files = _single_file(model, "exported", path)
    files.exported = table
    return files


def _locate_word_vectors(model: str, path: Path) -> CheckpointFiles:
    """A word2vec, GloVe or fastText file: one table, keyed by words, no tokenizer."""
    files = _single_file(model, "word-vectors", path)
    shape, cache = locate_word_vectors(path)  # from the cache's entry when it has one
    files.word_vectors = WordVectorFile(path, shape, cache)
    return files


def _from_index(
    model: str,
    kind: str,
    index: dict,
    index_path: Path,
    fetch: Callable[[str], Path | None],
    present: Callable[[str], bool],
) -> CheckpointFiles:
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelError(f"{index_path}: index has no weight_map")
    for tensor, file in weight_map.items():
        if not isinstance(file, str) or "/" in file or "\\" in file or file.startswith("."):
            # A shard name is a bare file name; anything else could point outside the checkpoint.
            raise ModelError(f"{index_path}: bad shard name {file!r} for tensor {tensor!r}")
    files = sorted(set(weight_map.values()))
    metadata = index.get("metadata")
    total = metadata.get("total_size") if isinstance(metadata, dict) else None
    # Only an estimate for `info`: anything but a count (a string, NaN, -1) is ignored.
    is_count = isinstance(total, int) and not isinstance(total, bool) and total >= 0
    total_size = total if is_count else None
    return CheckpointFiles(model, kind, files, dict(weight_map), total_size, fetch, present)


def _locate_hub(repo_id: str, revision: str | None, options: HubOptions | None) -> CheckpointFiles:
    # Imported here: only a Hub checkpoint needs huggingface_hub.
    from embinspect.sources.hub import HubRepo

    repo = HubRepo(repo_id, revision, options or HubOptions())
    where, names = repo.where, repo.files
    if INDEX_FILE in names:
        index_path = repo.require(INDEX_FILE)
        files = _from_index(
            where, "hub", load_json(index_path), index_path, repo.fetch, repo.header_is_local
        )
    else:
        # model.safetensors, or (rarely) other .safetensors files at the top with no index.
        weights = [SINGLE_FILE] if SINGLE_FILE in names else _top_level(names, (".safetensors",))
        if not weights:
            pickles = _top_level(names, PICKLE_SUFFIXES)
            if pickles:
                raise ModelError(refuse_pickle_message(f"{where}/{pickles[0]}"))
            if repo.offline and not names:
                raise ModelError(f"{where}: no file of it is in the local Hugging Face cache")
            ggufs = _top_level(names, (".gguf",))
            if ggufs:
                raise ModelError(
                    f"{where}: holds GGUF files, not safetensors ({', '.join(ggufs[:3])}"
                    f"{', ...' if len(ggufs) > 3 else ''}); download one (hf download "
                    f"{repo.repo_id} {ggufs[0]}) and give its path as MODEL"
                )
            raise ModelError(
                f"{where}: no .safetensors weights in this repo (no {SINGLE_FILE}, no {INDEX_FILE})"
            )
        files = CheckpointFiles(where, "hub", weights, None, None, repo.fetch, repo.header_is_local)
    files.hub = repo
    return files


def _top_level(names: dict[str, int | None], suffixes: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if "/" not in n and n.endswith(suffixes))
