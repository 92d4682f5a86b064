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


def hostile_rows() -> np.ndarray:
    """Rows at every scale float64 holds, and the rows that have no norm or direction."""
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(12, DIM))
    for i, scale in enumerate([1e-310, 1e-200, 1e-40, 1e20, 1e300, 1e307]):
        rows[i] *= scale
    rows[6] = 0.0
    rows[7, 3] = np.nan
    rows[8, 0] = np.inf
    rows[9, :] = -np.inf
    rows[10, :2] = [np.nan, np.inf]
    return rows


def test_numpy_scaling_is_the_torch_scaling():
    """The power-of-two scaling is exact, so numpy's and torch's agree bit for bit; norms
    and unit vectors are sums, which numpy and torch (MKL) add in different orders: the
    same to an ulp or two, and the same NaN, inf and zero rows."""
    from embinspect.tables import scaling

    rows = hostile_rows()
    tensor = torch.from_numpy(rows)
    assert np.array_equal(scaling.array_exponents(rows), scaling.exponents(tensor).numpy())
    got, exponent = scaling.array_scaled(rows)
    want, want_exponent = scaling.scaled(tensor)
    assert same_bits(got, want.numpy()) and np.array_equal(exponent, want_exponent.numpy())
    norms, torch_norms = scaling.array_norms(rows), scaling.norms(tensor).numpy()
    assert np.array_equal(np.isnan(norms), np.isnan(torch_norms))
    assert np.array_equal(np.isinf(norms), np.isinf(torch_norms))
    assert norms[:6] == pytest.approx(torch_norms[:6], rel=1e-15, abs=0)
    assert norms[6] == 0.0 and list(np.isnan(norms[7:])) == [True, False, False, True, False]
    units, torch_units = scaling.array_units(rows), scaling.units(tensor).numpy()
    assert np.array_equal(np.isnan(units), np.isnan(torch_units))
    finite = np.isfinite(torch_units)
    assert units[finite] == pytest.approx(torch_units[finite], rel=1e-15, abs=1e-16)
    usable = rows[[0, 1, 2, 3, 4, 5, 11]]
    assert scaling.array_mean(usable) == pytest.approx(
        scaling.mean(torch.from_numpy(usable)).numpy(), rel=1e-15, abs=0
    )
