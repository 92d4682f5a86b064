"""A whole embedding table, memory-mapped in its stored dtype, for full-table scans.

``tokens``, ``compare`` and ``positions`` read a few rows (``gather_array``: numpy alone, so
they never import torch); a neighbor search reads every row, many times for a batch of
queries. Mapping the tensor's bytes (located by the safetensors header) lets each chunk be
a view with no copy, and lets candidate rows be gathered by id without a second pass over
the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from embinspect import progress
from embinspect.errors import ModelError
from embinspect.sources.locate import CheckpointFiles
from embinspect.sources.tensor import TensorHeader
from embinspect.tables.scaling import SAFE_NORMS, RunningSum

if TYPE_CHECKING:
    import numpy as np
    import torch

# safetensors dtype -> (numpy dtype of the raw bytes, torch dtype to view them as). numpy
# has no bfloat16 or float8: map the bits as unsigned integers, view them in torch. Every
# one of these converts exactly to float32 and float64, so scans and rescoring upcast.
_STORAGE = {
    "F64": ("float64", "float64"),
    "F32": ("float32", "float32"),
    "F16": ("float16", "float16"),
    "BF16": ("uint16", "bfloat16"),
    "F8_E4M3": ("uint8", "float8_e4m3fn"),
    "F8_E5M2": ("uint8", "float8_e5m2"),
    "F8_E4M3FNUZ": ("uint8", "float8_e4m3fnuz"),
    "F8_E5M2FNUZ": ("uint8", "float8_e5m2fnuz"),
}

# A chunk converted to float32 stays near this size, whatever the table's width.
CHUNK_BYTES = 32 * 1024 * 1024
# A chunk scanned in its stored dtype is a view of the mapping (a copy only on its way to
# a GPU): larger chunks mean fewer Python-level steps per scan.
STORED_CHUNK_BYTES = 64 * 1024 * 1024


class EmbeddingTable:
    """Rows of one 2-D tensor: ``rows`` × ``dim``, stored as ``dtype`` in a shard file."""

    def __init__(self, files: CheckpointFiles, header: TensorHeader) -> None:
        import numpy as np

        if len(header.shape) != 2:
            raise ModelError(f"{header.name}: shape {list(header.shape)} is not a 2-D table")
        self.header = header
        self.name = header.name
        self.rows, self.dim = header.shape
        if self.rows == 0 or self.dim == 0:
            raise ModelError(f"{header.name}: an empty table ({self.rows} × {self.dim})")
        # A GGUF table in quantized blocks is read as raw bytes, a row a line, and each
        # chunk of rows is dequantized to float32 as it is read (``_view``).
        self._dequantize = _dequantizer(header) if header.is_quantized else None
        if self._dequantize is not None:
            raw_dtype, self._torch_dtype = "uint8", "float32"
            row_bytes = header.nbytes // self.rows if self.rows else 0
            shape = (self.rows, row_bytes)
        elif header.dtype in _STORAGE:
            raw_dtype, self._torch_dtype = _STORAGE[header.dtype]
            shape = (self.rows, self.dim)
        else:
            raise ModelError(
                f"{header.name}: dtype {header.dtype} cannot be scored; embinspect reads "
                f"{', '.join(_STORAGE)} and GGUF quantized blocks"
            )
        if header.nbytes != shape[0] * shape[1] * np.dtype(raw_dtype).itemsize:
            raise ModelError(f"{header.name}: byte size does not match shape {list(header.shape)}")
        loaded = files.loaded_rows(header)
        if loaded is not None:
            self._array = loaded  # a word-vector file's rows, parsed into memory
        else:
            # The shard, or (from the Hub) a file of this tensor's bytes, placed by `stored`.
            path, stored = files.tensor_file(header)
            # Copy-on-write mapping: writable for torch.from_numpy, the file is never modified.
            self._array = np.memmap(
                path, dtype=raw_dtype, mode="c", offset=stored.offset, shape=shape
            )
        # Bytes of one value as chunks carry it: float32 once dequantized.
        self._value_size = 4 if self._dequantize is not None else self._array.itemsize
        self._on_device: dict[str, torch.Tensor] = {}
        self._low: dict[str, tuple[torch.Tensor | None, float]] = {}
        # Per-row norms kept by the scorer after its first scan, by (centred, device).
        self.row_stats: dict[tuple[bool, str], object] = {}
        self.array_scans = 0  # scans by the numpy engine so far (``array_scan.choose``)

    def chunk_rows(self, stored: bool = False, itemsize: int | None = None) -> int:
        """Rows per chunk: float32 chunks (a conversion buffer) stay near CHUNK_BYTES;
        chunks read in place, of ``itemsize``-byte values, near STORED_CHUNK_BYTES."""
        if stored:
            size = itemsize or self._value_size
            return max(256, STORED_CHUNK_BYTES // (size * self.dim))
        return max(256, CHUNK_BYTES // (4 * self.dim))

    def _view(self, array) -> torch.Tensor:
        """Rows of the mapping as a tensor of their values: a view of the stored bytes, or
        (quantized) the rows dequantized to float32, shape (rows, dim)."""
        import torch

        if self._dequantize is not None:
            return torch.from_numpy(self._dequantize(array))
        tensor = torch.from_numpy(array)
        return tensor.view(getattr(torch, self._torch_dtype))

    @property
    def stored_dtype(self) -> str:
        """The torch name of the stored dtype: float32, bfloat16, float16, float64 or a
        float8 type."""
        return self._torch_dtype

    def chunks(
        self, device: torch.device, stored: bool = False, *, report: str | None = None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first row, rows on device)`` for consecutive chunks of the table, as float32,
        or in the stored dtype with ``stored`` (no conversion at all). ``report``: the
        label of a step that counts the rows done (``embinspect.progress``).

        The float32 rows live in one buffer reused for every chunk (a fresh allocation
        per chunk costs more in page faults than the conversion itself), so a chunk is
        valid only until the next one is yielded.
        """
        import torch

        step = self.chunk_rows(stored)
        resident = self._resident(device)
        buffer = None
        starts: Iterable[int] = range(0, self.rows, step)
        if report is not None:
            starts = progress.track(starts, report, self.rows, lambda s: min(step, self.rows - s))
        for start in starts:
            stop = min(start + step, self.rows)
            if resident is not None:
                block = resident[start:stop]
            else:
                block = self._view(self._array[start:stop])
            if stored:
                yield start, block.to(device, non_blocking=True)
                continue
            if block.dtype == torch.float32 and block.device == device:
                yield start, block  # already float32 where it is needed: no copy
                continue
            if buffer is None:
                buffer = torch.empty((step, self.dim), dtype=torch.float32, device=device)
            out = buffer[: stop - start]
            out.copy_(block, non_blocking=True)
            yield start, out

    def array_chunks(
        self, first: int = 0, stop: int | None = None, step: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """``chunks`` in numpy, without torch: ``(first row, float32 rows)`` of rows
        ``first`` .. ``stop`` - 1, ``step`` rows at a time, exact for every dtype
        ``readable_without_torch`` takes (a float64 value beyond float32's range becomes
        ±inf, as in ``chunks``). A float32 table's chunks are views of the mapping; the
        others are converted into one buffer reused for every chunk (bf16 widened by a
        16-bit shift), valid until the next chunk is yielded."""
        import numpy as np

        step = step or self.chunk_rows()
        stop = self.rows if stop is None else stop
        buffer = None
        for start in range(first, stop, step):
            raw = self._array[start : min(start + step, stop)]
            if self._dequantize is not None:
                yield start, self._dequantize(raw)
                continue
            if self._torch_dtype == "float32":
                yield start, np.asarray(raw)
                continue
            if buffer is None:
                buffer = np.empty((step, self.dim), dtype=np.uint32)
            out = buffer[: raw.shape[0]]
            if self._torch_dtype == "bfloat16":
                np.left_shift(raw, 16, out=out, dtype=np.uint32)
                yield start, out.view(np.float32)
                continue
            values = out.view(np.float32)
            with np.errstate(over="ignore"):
                np.copyto(values, raw, casting="unsafe")  # float16 or float64
            yield start, values

    def low_precision(self, dtype_name: str) -> tuple[torch.Tensor | None, float]:
        """The table in a half-precision dtype for fast products, and the largest relative
        rounding error of a row, |x - x'|/|x| (an upper bound). A table stored in that
        dtype is its own copy (None, error 0); a float32 table gets a copy made once, in
        chunks, on the CPU."""
        import torch

        if dtype_name == self._torch_dtype:
            return None, 0.0
        if dtype_name not in self._low:
            low_norm, high_norm = SAFE_NORMS
            dtype = getattr(torch, dtype_name)
            copy = torch.empty((self.rows, self.dim), dtype=dtype)
            worst = 0.0
            for start, chunk in self.chunks(torch.device("cpu")):
                low = chunk.to(dtype)
                copy[start : start + chunk.shape[0]] = low
                # x - x' is exact in float32; its norm and |x| carry n·u relative error.
                norms = chunk.norm(dim=1)
                ratio = (chunk - low.float()).norm(dim=1) / norms
                # Zero, non-finite and extreme rows never reach the fast pass: only rows
                # inside the safe norms count (a subnormal row would spoil the bound).
                ratio = torch.where((norms >= low_norm) & (norms <= high_norm), ratio, 0.0)
                worst = max(worst, float(ratio.max()))
            self._low[dtype_name] = (copy, worst * (1 + (self.dim + 16) * 2.0**-22))
        return self._low[dtype_name]

    def low_chunks(
        self, device: torch.device, dtype_name: str
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first row, rows on device)`` in a half-precision dtype (``low_precision``)."""
        copy, _ = self.low_precision(dtype_name)
        if copy is None:
            yield from self.chunks(device, stored=True)
            return
        step = self.chunk_rows(stored=True, itemsize=copy.element_size())
        for start in range(0, self.rows, step):
            yield start, copy[start : start + step].to(device, non_blocking=True)

    def _resident(self, device: torch.device) -> torch.Tensor | None:
        """On a GPU, the whole table in its stored dtype (float32 once dequantized), uploaded
        once for all passes."""
        import torch

        if device.type == "cpu":
            return None
        key = str(device)
        if key not in self._on_device:
            if device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(device)
                if self.rows * self.dim * self._value_size > free // 2:
                    return None
            if self._dequantize is None:
                self._on_device[key] = self._view(self._array).to(device)
            else:
                # Dequantized a chunk at a time, so the CPU never holds the float32 table.
                resident = torch.empty((self.rows, self.dim), dtype=torch.float32, device=device)
                step = self.chunk_rows(stored=True)
                for start in range(0, self.rows, step):
                    chunk = self._view(self._array[start : start + step])
                    resident[start : start + chunk.shape[0]] = chunk.to(device)
                self._on_device[key] = resident
        return self._on_device[key]

    def gather(self, ids: Sequence[int]) -> torch.Tensor:
        """Rows ``ids`` in float64 on the CPU, shape (len(ids), dim): exact stored values,
        ``gather_array``'s, as a tensor (one way of reading a few rows)."""
        import torch

        return torch.from_numpy(self.gather_array(ids))

    def gather_array(self, ids: Sequence[int]) -> np.ndarray:
        """Rows ``ids`` in float64 as a numpy array, shape (len(ids), dim): the same exact
        stored values as ``gather``, without importing torch (bf16 is widened to float32 by
        a 16-bit shift; float8, which numpy cannot read, goes through torch)."""
        import numpy as np

        index = np.asarray(ids, dtype=np.int64)
        raw = np.ascontiguousarray(self._array[index])
        if self._dequantize is not None:
            return self._dequantize(raw).astype(np.float64)
        if self._torch_dtype == "bfloat16":
            return (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        if self._torch_dtype in ("float64", "float32", "float16"):
            return raw.astype(np.float64)
        return self._view(raw).double().numpy()

    def mean_row(self) -> torch.Tensor:
        """Mean of the finite rows in float64, shape (dim,), summed chunk by chunk.

        A row holding NaN or infinity would make every centred row NaN: it is left out
        of the mean, as it is left out of every result. Summed at a power-of-two scale
        (``scaling.RunningSum``): float64 rows near 1e308 do not overflow the sum."""
        import torch

        total = RunningSum(self.dim)
        step = self.chunk_rows()
        for start in range(0, self.rows, step):
            block = self._view(self._array[start : start + step]).double()
            finite = torch.isfinite(block).all(dim=1)
            total.add(block if bool(finite.all()) else block[finite])
        if total.count == 0:
            raise ModelError(f"{self.name}: every row holds NaN or infinity; nothing to centre on")
        return total.mean()


def readable_without_torch(header: TensorHeader) -> bool:
    """Whether ``EmbeddingTable.gather_array`` reads this tensor's rows with numpy alone: a
    float64, float32, float16 or bfloat16 table, or GGUF quantized blocks."""
    return header.is_quantized or header.dtype in ("F64", "F32", "F16", "BF16")


def _dequantizer(header: TensorHeader):
    """A function from raw rows (uint8, shape (n, row bytes)) to float32 rows (n, dim), by
    the gguf package; ModelError when it cannot dequantize this type."""
    import numpy as np

    try:
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize
    except ImportError:
        raise ModelError(
            f"{header.name}: is {header.dtype}; reading quantized GGUF tables needs the gguf "
            "package (pip install gguf)"
        ) from None
    try:
        qtype = GGMLQuantizationType(header.ggml_type)
        dim = header.shape[1]
        # Refuse an unsupported type now, in one line, not halfway through a scan.
        from gguf.constants import GGML_QUANT_SIZES

        dequantize(np.zeros((1, GGML_QUANT_SIZES[qtype][1]), np.uint8), qtype)
    except (ValueError, NotImplementedError):
        from importlib.metadata import version

        raise ModelError(
            f"{header.name}: GGUF type {header.dtype} cannot be dequantized by gguf "
            f"{version('gguf')}; embinspect reads F32, F16, BF16, F64 and the types gguf "
            "dequantizes"
        ) from None

    def rows(raw):
        # Scales of stored blocks can overflow in float32 (inf/NaN rows, counted and left
        # out of results like any other): numpy's warnings about it are noise here.
        with np.errstate(all="ignore"):
            values = dequantize(np.ascontiguousarray(raw), qtype)
        return values.reshape(raw.shape[0], dim)

    if qtype == GGMLQuantizationType.Q8_0:
        return _q8_0_rows
    return rows


def _q8_0_rows(raw: np.ndarray) -> np.ndarray:
    """GGUF Q8_0 rows (uint8, (n, row bytes)) as float32 (n, dim): blocks of a float16
    scale d and 32 int8 values x, each value x·d, as gguf's ``Q8_0.dequantize_blocks``
    computes it (an int8 times a float16 is exact in float32, so the values are the same
    bits), in whole-array steps rather than gguf's groups of 16 rows: the dequantization
    of a scan then costs a few ms, not a third of a second, on SmolLM2's table."""
    import numpy as np

    blocks = np.ascontiguousarray(raw).reshape(raw.shape[0], -1, 34)
    scales = np.ascontiguousarray(blocks[:, :, :2]).view(np.float16).astype(np.float32)
    values = blocks[:, :, 2:].view(np.int8).astype(np.float32)
    with np.errstate(all="ignore"):
        values *= scales
    return values.reshape(raw.shape[0], -1)
