"""Read rows of an embedding table from its shard, and nothing else.

``read_row_array`` maps the tensor's bytes with numpy and reads only the requested rows, so
looking up ten tokens in a 2 GB table reads a few kilobytes and imports no torch;
``read_rows`` (``safetensors.safe_open`` and ``get_slice``, as torch tensors) is its
fallback for dtypes numpy cannot read (float8, integers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from embinspect.errors import ModelError, QueryError
from embinspect.sources.locate import CheckpointFiles
from embinspect.sources.tensor import TensorHeader

if TYPE_CHECKING:
    import numpy as np
    import torch


def read_rows(files: CheckpointFiles, header: TensorHeader, ids: Sequence[int]) -> torch.Tensor:
    """Rows ``ids`` of a 2-D tensor, shape (len(ids), dim), on the CPU: in the stored dtype,
    or float64 for a GGUF tensor (quantized rows are dequantized, exactly) or a word-vector
    file."""
    import torch
    from safetensors import SafetensorError, safe_open

    _check_ids(header, ids)
    if header.ggml_type is not None or files.word_vectors is not None or files.exported is not None:
        # A GGUF tensor, its rows read (and dequantized) from the file's memory map; the
        # rows of a word-vector file, parsed into memory; or an exported .npy's, mapped.
        from embinspect.tables.table import EmbeddingTable

        if not ids:
            return torch.empty((0, header.shape[1]), dtype=torch.float64)
        return EmbeddingTable(files, header).gather(ids)
    unique = sorted(set(ids))
    by_id: dict[int, torch.Tensor] = {}
    # The shard, or (from the Hub) a file of just this tensor's bytes: the same name in both.
    path, _ = files.tensor_file(header)
    try:
        with safe_open(str(path), framework="pt") as handle:
            table = handle.get_slice(header.name)
            # Read runs of consecutive ids in one slice each.
            for start, stop in _runs(unique):
                block = table[start:stop]
                for offset in range(stop - start):
                    by_id[start + offset] = block[offset]
    except SafetensorError as err:
        raise ModelError(f"{path}: cannot read {header.name} ({err})") from None
    if not ids:
        return torch.empty((0, header.shape[1]))
    return torch.stack([by_id[token_id] for token_id in ids])


def read_row_array(files: CheckpointFiles, header: TensorHeader, ids: Sequence[int]) -> np.ndarray:
    """Rows ``ids`` of a 2-D tensor in float64 as a numpy array, shape (len(ids), dim): the
    values ``read_rows`` gives, read through the table's memory map without importing torch
    (which only a dtype numpy cannot read, float8 or an integer table, still needs)."""
    import numpy as np

    from embinspect.tables.table import readable_without_torch

    if not readable_without_torch(header):
        return read_rows(files, header, ids).double().numpy()  # checks the ids itself
    _check_ids(header, ids)
    if not ids:
        return np.zeros((0, header.shape[1]), dtype=np.float64)
    from embinspect.tables.table import EmbeddingTable

    return EmbeddingTable(files, header).gather_array(ids)


def _check_ids(header: TensorHeader, ids: Sequence[int]) -> None:
    """QueryError for an id outside the tensor's rows."""
    rows = header.shape[0]
    for token_id in ids:
        if not 0 <= token_id < rows:
            raise QueryError(f"token id {token_id} is outside {header.name} (rows 0..{rows - 1})")


def _runs(sorted_ids: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for token_id in sorted_ids:
        if runs and runs[-1][1] == token_id:
            runs[-1] = (runs[-1][0], token_id + 1)
        else:
            runs.append((token_id, token_id + 1))
    return runs
