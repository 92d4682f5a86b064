"""The rows `tokens` and `compare` read with numpy (no torch) are the rows every scan and
rescoring reads with torch, bit for bit, for each stored dtype: float64, float32, float16,
bfloat16 (widened by a 16-bit shift), GGUF Q8_0 blocks and a word-vector file's rows; zeros
of both signs, subnormals, infinities and NaN included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from safetensors.torch import save_file
from test_gguf import TOKEN_TABLE, random_blocks, write_gguf

from embinspect.model.checkpoint import open_checkpoint
from embinspect.tables.rows import read_row_array, read_rows
from embinspect.tables.table import EmbeddingTable

ROWS, DIM = 64, 32
IDS = [0, 5, 5, 63, 17, 1, 2, 3]  # a repeat, out of order; rows 1..3 hold the odd values


def values(dtype: torch.dtype) -> torch.Tensor:
    """Random rows in ``dtype``, with -0.0, the smallest subnormal, ±inf and NaN in rows
    1..3, and the largest finite value of the dtype."""
    rng = np.random.default_rng(7)
    table = torch.from_numpy(rng.normal(size=(ROWS, DIM)) * 3).to(dtype)
    info = torch.finfo(dtype)
    table[1, :4] = torch.tensor([-0.0, 0.0, info.smallest_normal / 4, -info.max], dtype=dtype)
    table[2, :3] = torch.tensor([float("inf"), float("-inf"), info.tiny], dtype=dtype)
    table[3, 0] = float("nan")
    return table


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return (
        got.dtype == want.dtype == np.float64
        and got.shape == want.shape
        and np.array_equal(got.view(np.uint64), want.view(np.uint64))
    )


def both_ways(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The token table's rows IDS: (numpy, torch) as the table gathers them, and (numpy,
    torch) as `tokens` reads them."""
    checkpoint = open_checkpoint(str(path))
    header = checkpoint.token_table.header
    table = EmbeddingTable(checkpoint.files, header)
    return (
        table.gather_array(IDS),
        table.gather(IDS).numpy(),
        read_row_array(checkpoint.files, header, IDS),
        read_rows(checkpoint.files, header, IDS).double().numpy(),
    )


@pytest.mark.parametrize(
    "dtype",
    [torch.float64, torch.float32, torch.float16, torch.bfloat16],
    ids=["F64", "F32", "F16", "BF16"],
)
def test_safetensors_rows_equal_torch_bit_for_bit(tmp_path, dtype):
    path = tmp_path / "model.safetensors"
    stored = values(dtype)
    save_file({"wte.weight": stored}, str(path))
    array, tensor, looked_up, torch_looked_up = both_ways(path)
    assert same_bits(array, tensor)
    assert same_bits(looked_up, torch_looked_up)
    assert same_bits(array, looked_up)
    assert same_bits(array, stored[IDS].double().numpy())  # the stored values, widened
    assert np.signbit(array[5, 0]) and array[5, 0] == 0.0  # row 1's -0.0 (IDS[5] is 1)


def test_gguf_q8_0_rows_equal_torch_bit_for_bit(tmp_path):
    from gguf.quants import dequantize

    qtype = GGMLQuantizationType.Q8_0
    data = random_blocks(qtype, ROWS, DIM, seed=3)
    path = tmp_path / "model.gguf"
    write_gguf(path, {TOKEN_TABLE: (data, qtype)})
    array, tensor, looked_up, torch_looked_up = both_ways(path)
    assert same_bits(array, tensor)
    assert same_bits(looked_up, torch_looked_up)
    assert same_bits(array, dequantize(data, qtype).astype(np.float64)[IDS])


def test_word_vector_rows_equal_torch_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBINSPECT_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(11)
    table = rng.normal(size=(ROWS, DIM)).astype(np.float32)
    path = tmp_path / "vectors.txt"
    lines = [f"w{i} " + " ".join(repr(float(v)) for v in row) for i, row in enumerate(table)]
    path.write_text(f"{ROWS} {DIM}\n" + "\n".join(lines) + "\n")
    array, tensor, looked_up, torch_looked_up = both_ways(path)
    assert same_bits(array, tensor)
    assert same_bits(looked_up, torch_looked_up)
    assert same_bits(array, table[IDS].astype(np.float64))
