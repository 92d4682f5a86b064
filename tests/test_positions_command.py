"""`embinspect positions`: learned tables against numpy on the tensor read independently,
rotary frequencies against numpy from theta, the rotation against transformers' own, and
the picture as a real image of the promised size."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from reference import table
from safetensors.numpy import save_file

MINILM_POSITIONS = "embeddings.position_embeddings.weight"


def default_offsets(largest: int) -> list[int]:
    return [2**i for i in range(largest.bit_length()) if 2**i <= largest]


def offset_cosines(vectors: np.ndarray, offset: int) -> np.ndarray:
    a, b = vectors[:-offset], vectors[offset:]
    return np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def assert_learned_matches(learned: dict, vectors: np.ndarray, centred: bool = False) -> None:
    """Every figure of a learned report against numpy on ``vectors`` (positions, dim)."""
    norms = np.linalg.norm(vectors, axis=1)
    assert learned["positions"] == len(vectors)
    assert learned["norm_per_position"] == pytest.approx(norms.tolist(), rel=1e-12)
    summary = learned["norms"]
    expected = np.percentile(norms, [0, 5, 50, 95, 100])
    got = [summary[k] for k in ("min", "p5", "median", "p95", "max")]
    assert got == pytest.approx(expected.tolist(), rel=1e-12)
    assert summary["mean"] == pytest.approx(norms.mean(), rel=1e-12)
    assert summary["min_position"] == int(np.argmin(norms))
    assert summary["max_position"] == int(np.argmax(norms))
    measured = vectors - vectors.mean(axis=0) if centred else vectors
    for row in learned["offsets"]:
        cosines = offset_cosines(measured, row["offset"])
        assert row["pairs"] == len(vectors) - row["offset"]
        assert row["mean"] == pytest.approx(cosines.mean(), rel=1e-10, abs=1e-13)
        assert row["min"] == pytest.approx(cosines.min(), rel=1e-10, abs=1e-13)
        assert row["max"] == pytest.approx(cosines.max(), rel=1e-10, abs=1e-13)
    # Principal directions by an SVD, not the Gram eigenvalues the library uses.
    singular = np.linalg.svd(vectors - vectors.mean(axis=0), compute_uv=False)
    shares = singular**2 / (singular**2).sum()
    assert learned["components"] == pytest.approx(shares[:8].tolist(), rel=1e-9, abs=1e-15)


def test_minilm_learned_norms_and_offset_cosines_equal_numpy(cli, minilm):
    run = cli("positions", minilm, "--format", "json")
    report = run.json()
    assert report["kind"] == "learned"
    learned = report["learned"]
    positions = table(minilm, MINILM_POSITIONS)
    assert (learned["tensor"], learned["rows"], learned["dim"]) == (MINILM_POSITIONS, 512, 384)
    assert learned["first_position_id"] == 0 and learned["centered"] is False
    assert [row["offset"] for row in learned["offsets"]] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert_learned_matches(learned, positions)
    # MiniLM's position 0 (where [CLS] sits) is the outlier: about 5 times the median norm.
    assert learned["norms"]["max_position"] == 0
    # BERT's token-type table is named, and kept out: it is no position table.
    assert "embeddings.token_type_embeddings.weight (2 rows) is the segment" in run.stderr
    assert any("token type" in note for note in report["notes"])


def test_minilm_centred_with_chosen_offsets(cli, minilm):
    report = cli(
        "positions", minilm, "--center", "--offsets", "3, 1,500,3", "--format", "json"
    ).json()
    learned = report["learned"]
    assert learned["centered"] is True
    assert [row["offset"] for row in learned["offsets"]] == [1, 3, 500]
    assert_learned_matches(learned, table(minilm, MINILM_POSITIONS), centred=True)


def test_minilm_max_positions_keeps_the_first_n(cli, minilm):
    run = cli("positions", minilm, "--max-positions", "100", "--format", "json")
    learned = run.json()["learned"]
    assert [row["offset"] for row in learned["offsets"]] == [1, 2, 4, 8, 16, 32, 64]
    assert_learned_matches(learned, table(minilm, MINILM_POSITIONS)[:100])
    assert "the first 100 of 512 positions measured" in run.stderr


def test_gpt2_layout_all_1024_positions(cli, gpt2):
    report = cli("positions", gpt2, "--format", "json").json()
    learned = report["learned"]
    assert (learned["tensor"], learned["rows"], learned["dim"]) == (
        "transformer.wpe.weight",
        1024,
        128,
    )
    assert [row["offset"] for row in learned["offsets"]] == default_offsets(1023)
    assert_learned_matches(learned, table(gpt2, "transformer.wpe.weight"))


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_gpt2_delimited_rows_are_the_offsets(cli, gpt2, fmt):
    run = cli("positions", gpt2, "--format", fmt, "--offsets", "1,7")
    assert run.returncode == 0, run.stderr
    wpe = table(gpt2, "transformer.wpe.weight")
    if fmt == "jsonl":
        records = [json.loads(line) for line in run.stdout.splitlines()]
    else:
        sep = "\t" if fmt == "tsv" else ","
        lines = run.stdout.splitlines()
        header = lines[0].split(sep)
        assert header == ["offset", "pairs", "mean_cosine", "min_cosine", "max_cosine"]
        records = [dict(zip(header, line.split(sep), strict=True)) for line in lines[1:]]
    assert [int(r["offset"]) for r in records] == [1, 7]
    for record in records:
        cosines = offset_cosines(wpe, int(record["offset"]))
        assert int(record["pairs"]) == 1024 - int(record["offset"])
        assert float(record["mean_cosine"]) == pytest.approx(cosines.mean(), rel=1e-10, abs=1e-13)
    # The summary a pipe does not get on stdout is one line on stderr.
    if fmt != "jsonl":
        assert "transformer.wpe.weight: 1,024 positions × 128; norm min" in run.stderr


def test_roberta_positions_start_after_the_padding_rows(cli, tmp_path):
    rng = np.random.default_rng(7)
    positions = rng.standard_normal((12, 16)).astype(np.float32)
    positions[1] = 0  # padding_idx's row, as RoBERTa stores it
    save_file(
        {
            "embeddings.word_embeddings.weight": rng.standard_normal((50, 16)).astype(np.float32),
            MINILM_POSITIONS: positions,
        },
        str(tmp_path / "model.safetensors"),
    )
    config = {"model_type": "roberta", "pad_token_id": 1, "hidden_size": 16}
    (tmp_path / "config.json").write_text(json.dumps(config))
    run = cli("positions", tmp_path, "--format", "json")
    learned = run.json()["learned"]
    assert learned["first_position_id"] == 2 and learned["positions"] == 10
    assert_learned_matches(learned, positions[2:].astype(np.float64))
    assert "position 0 is row 2" in run.stderr


def smollm2_inv_freq() -> np.ndarray:
    return 100000.0 ** (-np.arange(0, 64, 2, dtype=np.float64) / 64)


def test_smollm2_rotary_frequencies_equal_numpy(cli, smollm2):
    report = cli("positions", smollm2, "--format", "json").json()
    assert report["kind"] == "rotary"
    rotary = report["rotary"]
    assert (rotary["theta"], rotary["head_dim"], rotary["rotary_dims"]) == (100000.0, 64, 64)
    assert rotary["partial_rotary_factor"] == 1.0 and rotary["max_positions"] == 8192
    assert rotary["scaling"] is None and rotary["scaling_applied"] is False
    inv_freq = smollm2_inv_freq()
    pairs = rotary["pairs"]
    assert [p["pair"] for p in pairs] == list(range(32))
    assert [p["dims"] for p in pairs] == [[i, i + 32] for i in range(32)]
    assert [p["inv_freq"] for p in pairs] == pytest.approx(inv_freq.tolist(), rel=1e-14)
    wavelength = 2 * np.pi / inv_freq
    assert [p["wavelength"] for p in pairs] == pytest.approx(wavelength.tolist(), rel=1e-14)
    assert [p["turns"] for p in pairs] == pytest.approx((8192 / wavelength).tolist(), rel=1e-14)
    assert rotary["slow_pairs"] == int((wavelength > 8192).sum()) == 12  # pairs 20..31
    offsets = [o["offset"] for o in rotary["offsets"]]
    assert offsets == [0, *default_offsets(8191)]
    for o in rotary["offsets"]:
        expected = np.cos(o["offset"] * inv_freq).mean()  # all 64 dims rotated
        assert o["expected_cosine"] == pytest.approx(expected, rel=1e-12, abs=1e-14)
    check = rotary["check"]
    assert check["max_abs_diff"] < 1e-9
    # float32 angles at position 8191 are off by ~1e-4 rad: the property holds far less well.
    assert check["max_abs_diff"] < check["max_abs_diff_float32"] < 1e-2
    assert check["context"] == 8192 and check["offsets"] == 1 + 2 * 13
    assert "rotate_half" in check["layout"]


def test_rotation_is_transformers_own(smollm2):
    """The library's rotation against transformers' apply_rotary_pos_emb (GPT-NeoX's, which
    is Llama's plus a pass-through part for a partial rotation), in float64."""
    import torch
    from transformers.models.gpt_neox.modeling_gpt_neox import apply_rotary_pos_emb

    from embinspect.analyses.positions import rotate

    rng = np.random.default_rng(3)
    for head_dim, rotated in ((64, 64), (64, 32), (80, 20)):
        inv_freq = 10000.0 ** (-np.arange(0, rotated, 2, dtype=np.float64) / rotated)
        positions = rng.integers(0, 5000, 9).astype(np.float64)
        q, k = rng.standard_normal((2, 9, head_dim))
        freqs = torch.from_numpy(positions)[:, None] * torch.from_numpy(inv_freq)[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)[None]  # (batch, seq, rotated)
        ours = rotate(q, positions, inv_freq)
        theirs, _ = apply_rotary_pos_emb(
            torch.from_numpy(q)[None, None], torch.from_numpy(k)[None, None], emb.cos(), emb.sin()
        )
        np.testing.assert_allclose(ours, theirs[0, 0].numpy(), rtol=0, atol=1e-13)
        # Relative: the score of rotated q, k depends on n - m alone.
        shifted = rotate(q, positions + 1234, inv_freq)
        k_at = rotate(k, positions + 17, inv_freq)
        k_shifted = rotate(k, positions + 17 + 1234, inv_freq)
        np.testing.assert_allclose(
            (ours * k_at).sum(1), (shifted * k_shifted).sum(1), rtol=0, atol=1e-11
        )


def checkpoint_with_config(tmp_path: Path, source: Path, **changes) -> Path:
    """SmolLM2's shards (linked, not copied) under a changed config.json."""
    folder = tmp_path / "model"
    folder.mkdir()
    for path in source.iterdir():
        if path.name != "config.json":
            (folder / path.name).symlink_to(path)
    config = json.loads((source / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def llama3_inv_freq(inv_freq, factor, low, high, original):
    """Llama 3.1's frequency scaling, written out from Meta's reference (float64)."""
    wavelength = 2 * np.pi / inv_freq
    low_wavelength, high_wavelength = original / low, original / high
    smooth = (original / wavelength - low) / (high - low)
    scaled = np.where(wavelength > low_wavelength, inv_freq / factor, inv_freq)
    middle = (wavelength >= high_wavelength) & (wavelength <= low_wavelength)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    return np.where(middle, blended, scaled)


def test_llama3_scaling_applied_by_transformers(cli, smollm2, tmp_path):
    scaling = {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 2048,
    }  # fmt: skip
    model = checkpoint_with_config(tmp_path, smollm2, rope_scaling=scaling)
    run = cli("positions", model, "--format", "json")
    rotary = run.json()["rotary"]
    assert rotary["scaling"] == scaling and rotary["scaling_applied"] is True
    expected = llama3_inv_freq(smollm2_inv_freq(), 8.0, 1.0, 4.0, 2048)
    got = [p["inv_freq"] for p in rotary["pairs"]]
    assert got == pytest.approx(expected.tolist(), rel=1e-6)  # transformers works in float32
    assert [p["unscaled_inv_freq"] for p in rotary["pairs"]] == pytest.approx(
        smollm2_inv_freq().tolist(), rel=1e-14
    )
    assert got[0] == pytest.approx(1.0) and got[-1] == pytest.approx(smollm2_inv_freq()[-1] / 8)
    assert rotary["check"]["max_abs_diff"] < 1e-9
    assert "rope scaling 'llama3' applied by transformers" in run.stderr


def test_unknown_scaling_is_reported_unscaled(cli, smollm2, tmp_path):
    model = checkpoint_with_config(
        tmp_path, smollm2, rope_scaling={"rope_type": "warp-drive", "factor": 2.0}
    )
    run = cli("positions", model, "--format", "json")
    rotary = run.json()["rotary"]
    assert rotary["scaling_applied"] is False
    assert [p["inv_freq"] for p in rotary["pairs"]] == pytest.approx(
        smollm2_inv_freq().tolist(), rel=1e-14
    )
    assert "knows no rope scaling 'warp-drive'" in run.stderr and "unscaled" in run.stderr


@pytest.mark.parametrize("claimed", [10**30, 2**53 + 1], ids=["1e30", "2^53+1"])
def test_an_impossible_context_in_config_is_not_believed(cli, smollm2, tmp_path, claimed):
    """A config claiming more positions than float64 counts exactly is ignored as a field of
    the wrong kind (it crashed the rotary check's sampling, exit 1)."""
    model = checkpoint_with_config(tmp_path, smollm2, max_position_embeddings=claimed)
    run = cli("positions", model, "--format", "json")
    assert run.returncode == 0, run.stderr
    rotary = run.json()["rotary"]
    assert rotary["max_positions"] is None
    assert "gives no max_position_embeddings" in run.stderr


def test_max_positions_beyond_2_to_the_53_is_a_usage_error(cli, smollm2):
    run = cli("positions", smollm2, "--max-positions", str(2**53 + 1))
    assert run.returncode == 2
    assert run.stderr.strip().endswith("at most 9,007,199,254,740,992 (2^53) positions")


def test_partial_rotary_factor(cli, smollm2, tmp_path):
    model = checkpoint_with_config(tmp_path, smollm2, partial_rotary_factor=0.25)
    rotary = cli("positions", model, "--format", "json", "--offsets", "1,5,300").json()["rotary"]
    assert (rotary["rotary_dims"], rotary["head_dim"]) == (16, 64)
    inv_freq = 100000.0 ** (-np.arange(0, 16, 2, dtype=np.float64) / 16)
    assert [p["inv_freq"] for p in rotary["pairs"]] == pytest.approx(inv_freq.tolist(), rel=1e-14)
    assert [p["dims"] for p in rotary["pairs"]] == [[i, i + 8] for i in range(8)]
    for o in rotary["offsets"]:
        # 16 rotated dims turn, the other 48 pass through unchanged.
        expected = (2 * np.cos(o["offset"] * inv_freq).sum() + 48) / 64
        assert o["expected_cosine"] == pytest.approx(expected, rel=1e-12)
    assert rotary["check"]["max_abs_diff"] < 1e-9


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_learned_cosine_matrix_png(cli, minilm, tmp_path):
    import matplotlib.image

    picture = tmp_path / "positions.png"
    run = cli("positions", minilm, "--max-positions", "64", "--plot", picture, "-f", "json")
    assert run.json()["plot"] == str(picture)
    assert png_size(picture) == (700, 600)
    pixels = matplotlib.image.imread(picture)
    assert pixels.shape == (600, 700, 4)
    # A heatmap, not a blank canvas: red (cosine near 1 on the diagonal) and blue appear.
    rgb = pixels[..., :3]
    assert ((rgb[..., 0] > 0.5) & (rgb[..., 2] < 0.3)).sum() > 1000
    assert ((rgb[..., 2] > 0.5) & (rgb[..., 0] < 0.5)).sum() > 100


def test_plot_rotary_wavelengths_svg(cli, smollm2, tmp_path):
    picture = tmp_path / "rope.svg"
    run = cli("positions", smollm2, "--plot", picture, "-f", "table")
    assert run.returncode == 0, run.stderr
    assert "<svg" in picture.read_text()[:2000]
    assert f"picture: {picture}" in run.stdout.replace("\n", "")


def test_plot_without_matplotlib_says_how_to_install(cli_process, minilm, tmp_path):
    # A process: PYTHONPATH is read at start-up, and this one has matplotlib imported.
    cli = cli_process
    blocker = tmp_path / "blocked" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    picture = tmp_path / "p.png"
    run = cli("positions", minilm, "--plot", picture, env={"PYTHONPATH": str(blocker.parent)})
    assert run.returncode == 2
    assert run.stderr == (
        "embinspect: error: --plot needs matplotlib: pip install 'embinspect[plot]'\n"
    )
    assert not picture.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--offsets", "1,x"], "--offsets: 'x' is not an integer"),
        (["--offsets", "0"], "--offsets: 0 is not a positive offset"),
        (
            ["--offsets", "512"],
            "--offsets 512: 512 positions are measured, so offsets go up to 511",
        ),
        (["--plot", "p.jpg"], "--plot p.jpg: write a .png, .svg or .pdf file"),
        (["--plot", "no/such/dir/p.png"], "no such folder"),
    ],
)
def test_usage_errors(cli, minilm, tmp_path, args, message):
    run = cli("positions", minilm, *args, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.startswith("embinspect: error: ") and message in run.stderr
    assert run.stderr.count("\n") == 1 and run.stdout == ""


def test_center_is_for_learned_tables(cli, smollm2):
    run = cli("positions", smollm2, "--center")
    assert run.returncode == 2 and "--center" in run.stderr and "rotary" in run.stderr


def tiny_model(folder: Path, config: dict | None, token_name: str) -> Path:
    folder.mkdir()
    rows = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)
    save_file({token_name: rows}, str(folder / "model.safetensors"))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_models_without_positions_are_model_errors(cli, tmp_path, glove):
    lone = tiny_model(tmp_path / "lone", None, "model.embed_tokens.weight") / "model.safetensors"
    run = cli("positions", lone)
    assert run.returncode == 3
    assert "no position table and no rotary settings in config.json" in run.stderr
    bloom = tiny_model(
        tmp_path / "bloom",
        {"model_type": "bloom", "n_head": 2},
        "transformer.word_embeddings.weight",
    )
    run = cli("positions", bloom)
    assert run.returncode == 3 and "ALiBi" in run.stderr
    run = cli("positions", glove)
    assert run.returncode == 3
    assert run.stderr.endswith(
        "word vectors carry no position; positions inspects learned tables and RoPE\n"
    )
    for failed in (run,):
        assert "Traceback" not in failed.stderr and failed.stdout == ""


def test_table_format_reads_as_a_report(cli, minilm, smollm2):
    learned = cli("positions", minilm, "-f", "table").stdout
    assert "Learned positions of" in learned and "(512 × 384, F32)" in learned
    assert "cosine between positions i and i + offset" in learned
    assert "(position 0)" in learned  # where the largest norm is
    rotary = cli("positions", smollm2, "-f", "table").stdout
    assert "Rotary positions (RoPE)" in rotary and "12 of 32 pairs turn" in rotary
    assert "rotate_half" in rotary and "in float64" in rotary


def test_positions_help_imports_nothing_heavy():
    from test_imports import imported_heavy_modules

    assert imported_heavy_modules("positions", "--help") == []


def test_rotary_positions_import_no_torch(smollm2):
    """A rotary model's figures come from config.json and numpy: torch is never loaded."""
    from test_imports import imported_heavy_modules

    heavy = imported_heavy_modules("positions", str(smollm2), "--format", "json")
    assert "torch" not in heavy and "transformers" not in heavy


def test_expected_offsets_helper_matches_the_library():
    from embinspect.analyses.positions import default_offsets as library

    for largest in (1, 2, 3, 511, 1023, 8191):
        assert library(largest) == default_offsets(largest)
