"""GGUF files as MODEL, on the real SmolLM2-135M GGUF (Q8_0 token table, Q4_1 elsewhere,
tied), against independent readings: gguf's own GGUFReader and dequantize, transformers'
GGUF tokenizer, and the safetensors folder the fixtures build from the same file."""

from __future__ import annotations

import hashlib
import json
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import checkpoints
import numpy as np
import pytest
from conftest import _cli_env
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES, LlamaFileType
from gguf.quants import dequantize
from reference import cos_add, cosines, ranked
from test_environment import WITH_CTRL_C
from test_errors import EXIT_MODEL, assert_one_line_error
from test_imports import imported_heavy_modules

TOKEN_TABLE = "token_embd.weight"
QUERIES = ("Paris", "king", "#1000", "cat")


@pytest.fixture(scope="module")
def gguf_path():
    return checkpoints.smollm2_gguf()


@pytest.fixture(scope="module")
def reader(gguf_path):
    return GGUFReader(gguf_path)


@pytest.fixture(scope="module")
def gguf_table(reader):
    """The token table as gguf dequantizes it, in float64: shape (49152, 576)."""
    tensor = next(t for t in reader.tensors if t.name == TOKEN_TABLE)
    return np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float64)


@pytest.fixture(scope="session")
def cache_env(tmp_path_factory):
    """This session's embinspect cache: the GGUF tokenizer is converted anew once, by the
    first test that needs it, and read back by the others (as a user's later runs do)."""
    return {"EMBINSPECT_CACHE": str(tmp_path_factory.mktemp("session") / "embinspect-cache")}


@pytest.fixture
def fresh_cache_env(tmp_path):
    """A fresh embinspect cache: the GGUF tokenizer is converted anew."""
    return {"EMBINSPECT_CACHE": str(tmp_path / "embinspect-cache")}


@pytest.fixture(scope="module")
def hf_tokenizer(gguf_path):
    """transformers' tokenizer from the GGUF metadata (the reference: built once)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)


def field(reader, key):
    return reader.fields[key].contents()


def dequantized_types() -> list[GGMLQuantizationType]:
    """The block types the installed gguf dequantizes (Q8_1 and Q8_K, say, it does not)."""
    types = []
    for qtype, (block, size) in GGML_QUANT_SIZES.items():
        if block == 1:
            continue  # plain values (F32, BF16, ...) and integers
        try:
            dequantize(np.zeros((1, size), np.uint8), qtype)
        except NotImplementedError:
            continue
        types.append(qtype)
    return types


def test_our_ggml_type_table_is_ggufs():
    from embinspect.sources.tensor import GGML_TYPES

    for qtype, (block, size) in GGML_QUANT_SIZES.items():
        ours = GGML_TYPES[qtype.value]
        assert (ours.name, ours.block_size, ours.type_size) == (qtype.name, block, size)
    assert len(dequantized_types()) >= 20  # the K-quants, i-quants, ternary and FP4 types


def test_info_reads_the_gguf_metadata(cli, gguf_path, reader):
    info = cli("info", gguf_path, "-f", "json").json()
    tensor = next(t for t in reader.tensors if t.name == TOKEN_TABLE)
    assert info["tensors"] == [
        {
            "role": "token",
            "name": TOKEN_TABLE,
            "shape": [int(d) for d in reversed(tensor.shape)],
            "dtype": "Q8_0",
            "file": gguf_path.name,
            "bytes": int(tensor.n_bytes),
            "family": "GGUF (llama.cpp, Ollama)",
        }
    ]
    assert info["tensors"][0]["shape"] == [49152, 576]
    assert info["format"] == "gguf" and info["architecture"] == "llama"
    file_type = LlamaFileType(field(reader, "general.file_type")).name.removeprefix("MOSTLY_")
    assert info["gguf"] == {
        "version": field(reader, "GGUF.version"),
        "name": field(reader, "general.name"),
        "file_type": file_type,
        "tensors": len(reader.tensors),
        "tokenizer": "gpt2",
    }
    assert file_type == "Q4_1"
    assert (info["vocab_size"], info["rows"], info["padding_rows"]) == (49152, 49152, 0)
    assert info["vocab_source"] == "tokenizer.ggml.tokens"
    assert info["tied"] is True
    assert info["total_params"] == sum(int(np.prod(t.shape)) for t in reader.tensors)
    assert info["position"] == {
        "kind": "rotary",
        "theta": field(reader, "llama.rope.freq_base"),
        "theta_is_default": False,
        "head_dim": 576 // field(reader, "llama.attention.head_count"),
        "partial_rotary_factor": 1.0,
        "rotary_dims": field(reader, "llama.rope.dimension_count"),
        "max_positions": field(reader, "llama.context_length"),
        "scaling": None,
    }
    table = cli("info", gguf_path, "-f", "table").stdout
    assert "GGUF v3, 272 tensors, file type Q4_1" in table
    assert "Q8_0" in table and "30,081,024" in table


def test_info_on_gguf_imports_nothing_heavy(gguf_path):
    assert imported_heavy_modules("info", str(gguf_path), "--format", "json") == []


@pytest.mark.slow
def test_token_rows_equal_the_dequantized_tensor(cli, gguf_path, gguf_table, cache_env):
    text = "The cat sat on the mat, naïvely"
    lookup = cli("tokens", gguf_path, text, "--vectors", "-f", "json", env=cache_env).json()
    assert lookup["tensor"] == TOKEN_TABLE
    for row in lookup["tokens"]:
        assert row["vector"] == gguf_table[row["token_id"]].tolist()  # exact
        assert row["norm"] == pytest.approx(np.linalg.norm(gguf_table[row["token_id"]]), rel=1e-12)
    rotary = cli("tokens", gguf_path, "cat", "--positions", "-f", "json", env=cache_env).json()
    assert rotary["position"]["kind"] == "rotary"
    assert "inside attention" in rotary["position_note"]


@pytest.mark.slow
def test_token_ids_equal_the_transformers_gguf_tokenizer(
    cli, gguf_path, fresh_cache_env, hf_tokenizer, tmp_path
):
    cache_env, hf = fresh_cache_env, hf_tokenizer
    texts = ["Hello world", " Paris, naïvely", "def f(x):\n    return x**2", "2026-12-02 €1,234.5"]
    for attempt in ("cold", "warm"):  # the second run reads the converted tokenizer back
        for text in texts:
            run = cli("tokens", gguf_path, text, "-f", "json", env=cache_env)
            ids = [row["token_id"] for row in run.json()["tokens"]]
            assert ids == hf.encode(text, add_special_tokens=False), (attempt, text)
        cached = list((tmp_path / "embinspect-cache" / "gguf-tokenizers").glob("*.json"))
        assert len(cached) == 1, attempt


def test_neighbors_equal_the_float64_reference(cli, gguf_path, gguf_table, cache_env):
    results = cli("neighbors", gguf_path, *QUERIES, "-k", "10", "-f", "json", env=cache_env).json()
    for result in results:
        (row,) = result["token_ids"]
        ids, scores = ranked(cosines(gguf_table, gguf_table[row]), 10, exclude={row})
        assert [n["token_id"] for n in result["neighbors"]] == ids, result["query"]
        assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-12)


def test_neighbors_equal_those_of_the_safetensors_folder(cli, gguf_path, smollm2, cache_env):
    """The folder holds the same rows rounded to bf16: the same neighbors, scores within
    bf16's rounding."""
    from_gguf = cli("neighbors", gguf_path, *QUERIES, "-k", "10", "-f", "json", env=cache_env)
    from_folder = cli("neighbors", smollm2, *QUERIES, "-k", "10", "-f", "json")
    for ours, theirs in zip(from_gguf.json(), from_folder.json(), strict=True):
        assert ours["token_ids"] == theirs["token_ids"]
        assert [n["token"] for n in ours["neighbors"]] == [n["token"] for n in theirs["neighbors"]]
        assert [n["score"] for n in ours["neighbors"]] == pytest.approx(
            [n["score"] for n in theirs["neighbors"]], abs=2e-3
        )


def test_analogy_on_gguf(cli, gguf_path, gguf_table, cache_env):
    (result,) = cli(
        "analogy", gguf_path, "king", "man", "woman", "-f", "json", env=cache_env
    ).json()
    a, b, c = (q["token_ids"][0] for q in result["queries"])
    ids, scores = ranked(cos_add(gguf_table, *(gguf_table[i] for i in (a, b, c))), 5, {a, b, c})
    assert [r["token_id"] for r in result["results"]] == ids
    assert [r["score"] for r in result["results"]] == pytest.approx(scores, rel=1e-12)
    assert result["results"][0]["token"] == "Ġqueen"


# --- every type gguf dequantizes --------------------------------------------------------


def write_gguf(path, tables: dict[str, tuple[np.ndarray, GGMLQuantizationType | None]]):
    """A GGUF of the given tensors (raw bytes for quantized types), no tokenizer."""
    writer = GGUFWriter(path, "llama")
    writer.add_context_length(128)
    for name, (data, qtype) in tables.items():
        writer.add_tensor(name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


POOLED = "is an embedding model (its outputs are pooled vectors)"
REUSED = (True, "no output tensor is stored: the head reuses the token table")


@pytest.mark.parametrize(
    ("arch", "pooling", "expected"),
    [
        pytest.param("bert", None, (None, f"none: bert {POOLED}"), id="bert-encoder"),
        pytest.param("qwen3", 1, (None, f"none: qwen3 {POOLED}"), id="pooling-says-embedding"),
        pytest.param("llama", None, REUSED, id="llama-without-output-is-tied"),
        pytest.param("llama", 0, REUSED, id="pooling-none-is-a-language-model"),
    ],
)
def test_output_head_of_a_gguf_from_its_metadata(cli, tmp_path, arch, pooling, expected):
    path = tmp_path / f"{arch}.gguf"
    writer = GGUFWriter(path, arch)
    if pooling is not None:
        writer.add_uint32(f"{arch}.pooling_type", pooling)
    writer.add_tensor(TOKEN_TABLE, np.ones((16, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = cli("info", path, "-f", "json").json()
    assert (info["tied"], info["tied_reason"]) == expected


def random_blocks(qtype: GGMLQuantizationType, rows: int, dim: int, seed: int) -> np.ndarray:
    """Random rows of ``qtype`` blocks, shape (rows, bytes per row); rows that would hold
    NaN or infinity (random half-precision scales) are drawn again."""
    block, size = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(seed)
    if qtype == GGMLQuantizationType.BF16:  # values, not blocks: random bits would overflow
        values = rng.normal(size=(rows, dim)).astype(np.float32)
        return (values.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    data = rng.integers(0, 256, size=(rows, dim // block * size), dtype=np.uint8)
    for _ in range(100):
        bad = ~np.isfinite(dequantize(data, qtype)).all(axis=1)
        if not bad.any():
            return data
        data[bad] = rng.integers(0, 256, size=(int(bad.sum()), data.shape[1]), dtype=np.uint8)
    raise AssertionError(f"{qtype.name}: no finite rows")


@pytest.mark.parametrize(
    "qtype",
    [GGMLQuantizationType[name] for name in ("Q4_0", "Q5_1", "Q4_K", "Q6_K", "IQ4_XS", "BF16")],
)
def test_neighbors_on_each_storage_type(cli, tmp_path, qtype):
    rows, dim = 512, 256
    data = random_blocks(qtype, rows, dim, seed=qtype.value)
    path = tmp_path / f"{qtype.name}.gguf"
    write_gguf(path, {TOKEN_TABLE: (data, qtype)})
    expected = np.asarray(dequantize(data, qtype), dtype=np.float64)
    info = cli("info", path, "-f", "json").json()
    assert info["tensors"][0]["dtype"] == qtype.name
    assert info["tensors"][0]["shape"] == [rows, dim]
    (result,) = cli("neighbors", path, "#7", "-k", "6", "-f", "json").json()
    ids, scores = ranked(cosines(expected, expected[7]), 6, exclude={7})
    assert [n["token_id"] for n in result["neighbors"]] == ids
    assert [n["score"] for n in result["neighbors"]] == pytest.approx(scores, rel=1e-12)
    lookup = cli("tokens", path, "x", "-f", "json")
    assert lookup.returncode == 2 and "no tokenizer" in lookup.stderr


def test_every_dequantized_type_reads_as_gguf_dequantizes_it(tmp_path):
    from embinspect.model.checkpoint import open_checkpoint
    from embinspect.tables.table import EmbeddingTable

    for qtype in dequantized_types():
        name = qtype.name
        data = random_blocks(qtype, 64, 256, seed=qtype.value)
        path = tmp_path / f"{name}.gguf"
        write_gguf(path, {TOKEN_TABLE: (data, qtype)})
        checkpoint = open_checkpoint(str(path))
        table = EmbeddingTable(checkpoint.files, checkpoint.token_table.header)
        got = table.gather(list(range(64))).numpy()
        assert np.array_equal(got, dequantize(data, qtype).astype(np.float64)), name
        # and chunk by chunk, as a scan reads them
        import torch

        chunks = [chunk.clone() for _, chunk in table.chunks(torch.device("cpu"), stored=True)]
        assert np.array_equal(torch.cat(chunks).double().numpy(), got), name


def test_learned_positions_and_untied_head_in_gguf(cli, tmp_path, gguf_table):
    """A GPT-2-shaped GGUF: F16 token table, F32 position table, a separate output head."""
    tokens = gguf_table[:1024].astype(np.float16)
    positions = gguf_table[2048:2176].astype(np.float32)
    head = gguf_table[4096:5120].astype(np.float32)
    path = tmp_path / "gpt2-like.gguf"
    write_gguf(
        path,
        {TOKEN_TABLE: (tokens, None), "position_embd.weight": (positions, None),
         "output.weight": (head, None)},
    )  # fmt: skip
    info = cli("info", path, "-f", "json").json()
    roles = {t["role"]: (t["name"], t["dtype"], t["shape"]) for t in info["tensors"]}
    assert roles == {
        "token": (TOKEN_TABLE, "F16", [1024, 576]),
        "position": ("position_embd.weight", "F32", [128, 576]),
        "output": ("output.weight", "F32", [1024, 576]),
    }
    assert info["tied"] is False
    assert info["position"]["kind"] == "learned" and info["position"]["positions"] == 128
    (result,) = cli("neighbors", path, "#3", "--table", "output", "-k", "4", "-f", "json").json()
    want = head.astype(np.float64)
    assert [n["token_id"] for n in result["neighbors"]] == ranked(cosines(want, want[3]), 4, {3})[0]


# --- bad GGUF inputs ----------------------------------------------------------------------


def cut_copy(source, target, size: int):
    with open(source, "rb") as handle:
        target.write_bytes(handle.read(size))
    return target


@pytest.mark.parametrize(
    ("size", "fragment"),
    [
        (2, "not a GGUF file"),
        (16, "truncated GGUF file: the metadata count ends past the end of the file"),
        (500_000, "truncated GGUF file: 'tokenizer.ggml.tokens' ends past the end of the file"),
        (1_780_000, "truncated GGUF file"),
        (20_000_000, "truncated file: tensor 'token_embd.weight' ends past the end of the file"),
    ],
)
def test_truncated_gguf(cli, gguf_path, tmp_path, size, fragment):
    cut = cut_copy(gguf_path, tmp_path / "cut.gguf", size)
    for command in (("info", cut), ("neighbors", cut, "#1")):
        assert_one_line_error(cli(*command), EXIT_MODEL, fragment)


def test_cut_in_other_tensors_data(cli, gguf_path, tmp_path):
    cut = cut_copy(gguf_path, tmp_path / "cut.gguf", gguf_path.stat().st_size - 1000)
    # the last tensor in the file is the final norm
    assert_one_line_error(cli("info", cut), EXIT_MODEL, "tensor 'output_norm.weight' ends past")


def test_wrong_magic_and_versions(cli, gguf_path, tmp_path):
    head = gguf_path.read_bytes()[:4096]
    cases = [
        (b"GGUX" + head[4:], "not a GGUF file (it does not start with the bytes 'GGUF')"),
        (head[:4] + struct.pack("<I", 1) + head[8:], "GGUF version 1; embinspect reads versions"),
        (head[:4] + struct.pack(">I", 3) + head[8:], "a big-endian GGUF file"),
    ]
    for number, (content, fragment) in enumerate(cases):
        path = tmp_path / f"bad{number}.gguf"
        path.write_bytes(content)
        assert_one_line_error(cli("info", path), EXIT_MODEL, fragment)


def patched_type(gguf_path, tmp_path, type_id: int):
    """A copy of the real file whose token table claims ggml type ``type_id``."""
    data = bytearray(gguf_path.read_bytes())
    name = TOKEN_TABLE.encode()
    at = data.index(struct.pack("<Q", len(name)) + name, 1_000_000)  # in the tensor infos
    type_at = at + 8 + len(name) + 4 + 2 * 8  # after the name, n_dims and two dims
    assert struct.unpack_from("<I", data, type_at)[0] == GGMLQuantizationType.Q8_0
    struct.pack_into("<I", data, type_at, type_id)
    path = tmp_path / f"type{type_id}.gguf"
    path.write_bytes(bytes(data))
    return path


def test_unsupported_quant_types(cli, gguf_path, tmp_path):
    q8_1 = patched_type(gguf_path, tmp_path, GGMLQuantizationType.Q8_1)
    assert cli("info", q8_1, "-f", "json").json()["tensors"][0]["dtype"] == "Q8_1"
    run = cli("neighbors", q8_1, "#1")
    assert_one_line_error(
        run, EXIT_MODEL, "token_embd.weight: GGUF type Q8_1 cannot be dequantized"
    )
    for type_id, shown in ((99, "GGML_TYPE_99"), (GGMLQuantizationType.I8, "I8")):
        path = patched_type(gguf_path, tmp_path, type_id)
        assert_one_line_error(
            cli("info", path), EXIT_MODEL, f"token_embd.weight: GGUF type {shown} cannot be read"
        )


def test_a_folder_of_gguf_files_points_at_them(cli, gguf_path, tmp_path):
    (tmp_path / gguf_path.name).symlink_to(gguf_path)
    run = cli("info", tmp_path)
    assert_one_line_error(run, EXIT_MODEL, "but GGUF files: give one as MODEL")


# --- ollama:NAME[:TAG] ------------------------------------------------------------------


@pytest.fixture(scope="module")
def gguf_digest(gguf_path):
    import hashlib

    digest = hashlib.sha256()
    with open(gguf_path, "rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def ollama_models(root, gguf_path, digest, name="library/smollm2", tag="135m", size=None):
    """An Ollama models folder as `ollama pull` leaves it: manifest, and blobs by digest
    (the model blob a link to the real GGUF; the template a real small blob)."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / f"sha256-{digest}").symlink_to(gguf_path)
    template = b"{{ .Prompt }}"
    template_digest = __import__("hashlib").sha256(template).hexdigest()
    (blobs / f"sha256-{template_digest}").write_bytes(template)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": f"sha256:{template_digest}", "size": len(template)},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.template",
             "digest": f"sha256:{template_digest}", "size": len(template)},
            {"mediaType": "application/vnd.ollama.image.model",
             "digest": f"sha256:{digest}", "size": size or gguf_path.stat().st_size},
        ],
    }  # fmt: skip
    folder = root / "manifests" / "registry.ollama.ai" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / tag).write_text(json.dumps(manifest))
    return root


def test_ollama_model_reads_its_gguf_blob(cli, gguf_path, gguf_digest, tmp_path, cache_env):
    root = ollama_models(tmp_path / "models", gguf_path, gguf_digest)
    env = {**cache_env, "OLLAMA_MODELS": str(root)}
    info = cli("info", "ollama:smollm2:135m", "-f", "json", env=env).json()
    direct = cli("info", gguf_path, "-f", "json").json()
    assert info["model"] == "ollama:smollm2:135m"
    assert info["tensors"][0]["file"] == f"sha256-{gguf_digest}"
    for key in ("vocab_size", "rows", "position", "gguf", "tied", "total_params"):
        assert info[key] == direct[key], key
    assert [t["bytes"] for t in info["tensors"]] == [t["bytes"] for t in direct["tensors"]]
    (ours,) = cli("neighbors", "ollama:smollm2:135m", "Paris", "-f", "json", env=env).json()
    (theirs,) = cli("neighbors", gguf_path, "Paris", "-f", "json", env=cache_env).json()
    provenance = ours.pop("provenance")
    assert (provenance["source"], provenance["resolved"]) == (
        "ollama:smollm2:135m",
        str((root / "blobs" / f"sha256-{gguf_digest}").resolve()),  # the blob, links followed
    )
    assert {**theirs.pop("provenance"), "source": "", "resolved": ""} == {
        **provenance, "source": "", "resolved": ""
    }  # fmt: skip
    assert ours == theirs
    # the default folder is ~/.ollama/models
    home = tmp_path / "home"
    ollama_models(home / ".ollama" / "models", gguf_path, gguf_digest, tag="latest")
    run = cli("info", "ollama:library/smollm2", "-f", "json", env={"HOME": str(home)})
    assert run.json()["rows"] == 49152


def test_ollama_mistakes(cli, gguf_path, gguf_digest, tmp_path):
    root = ollama_models(tmp_path / "models", gguf_path, gguf_digest)
    env = {"OLLAMA_MODELS": str(root)}
    cases = [
        ("ollama:smollm2", "ollama:smollm2: no such tag; pulled tags: 135m"),
        ("ollama:llama3.2:1b", "not pulled into"),
        ("ollama:../etc:x", "not an Ollama model name"),
        ("ollama:", "not an Ollama model name"),
    ]
    for model, fragment in cases:
        assert_one_line_error(cli("info", model, env=env), EXIT_MODEL, fragment)
    missing = {"OLLAMA_MODELS": str(tmp_path / "nowhere")}
    assert_one_line_error(
        cli("info", "ollama:smollm2", env=missing), EXIT_MODEL, "no Ollama models folder"
    )
    (root / "blobs" / f"sha256-{gguf_digest}").unlink()
    assert_one_line_error(
        cli("info", "ollama:smollm2:135m", env=env), EXIT_MODEL, "model blob", "is missing"
    )
    short = ollama_models(tmp_path / "short", gguf_path, gguf_digest, size=1234)
    run = cli("info", "ollama:smollm2:135m", env={"OLLAMA_MODELS": str(short)})
    assert_one_line_error(run, EXIT_MODEL, "but the manifest says 1,234")


def test_ollama_old_blob_names(cli, gguf_path, gguf_digest, tmp_path):
    root = ollama_models(tmp_path / "models", gguf_path, gguf_digest)
    blob = root / "blobs" / f"sha256-{gguf_digest}"
    blob.rename(root / "blobs" / f"sha256:{gguf_digest}")
    run = cli("info", "ollama:smollm2:135m", "-f", "json", env={"OLLAMA_MODELS": str(root)})
    assert run.json()["rows"] == 49152


@pytest.mark.slow
def test_tokenizer_files_beside_the_gguf_are_not_its_tokenizer(
    cli, gguf_path, minilm, hf_tokenizer, tmp_path
):
    """transformers would read a tokenizer.json lying beside the GGUF first; the metadata
    is the GGUF's tokenizer, and the one cached."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "model.gguf").symlink_to(gguf_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((minilm / name).read_bytes())  # BERT's, not SmolLM2's
    env = {"EMBINSPECT_CACHE": str(tmp_path / "cache")}
    text = "Paris, naïvely"
    ids = [
        t["token_id"]
        for t in cli("tokens", folder / "model.gguf", text, "-f", "json", env=env).json()["tokens"]
    ]
    assert ids == hf_tokenizer.encode(text, add_special_tokens=False)


def gguf_with(tmp_path, name: str, metadata: dict, rows: int = 8, dim: int = 32):
    """A small F32 GGUF with extra metadata fields, written by gguf's own writer."""
    writer = GGUFWriter(tmp_path / name, "llama")
    for key, value in metadata.items():
        writer.add_key_value(key, *value)
    writer.add_tensor(TOKEN_TABLE, np.ones((rows, dim), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tmp_path / name


def test_odd_metadata_is_read_or_refused_in_one_line(cli, tmp_path):
    from gguf import GGUFValueType as V

    tokens_int = gguf_with(tmp_path, "tokens-int.gguf", {"tokenizer.ggml.tokens": (5, V.UINT32)})
    info = cli("info", tokens_int, "-f", "json").json()
    assert info["vocab_size"] is None  # a vocabulary that is no list of strings is none
    scaling = {"llama.rope.scaling.factor": (list(range(300)), V.ARRAY, V.INT32),
               "llama.rope.scaling.type": ("yarn", V.STRING),
               "llama.rope.freq_base": (10000.0, V.FLOAT32)}  # fmt: skip
    info = cli("info", gguf_with(tmp_path, "scaling.gguf", scaling), "-f", "json").json()
    assert info["position"]["scaling"] == {"rope_type": "yarn"}  # an array is no factor
    assert info["tensors"][0]["shape"] == [8, 32]
    empty = gguf_with(tmp_path, "empty.gguf", {}, rows=0)
    assert_one_line_error(cli("neighbors", empty, "#0"), EXIT_MODEL, "an empty table (0 × 32)")


def test_our_file_type_names_are_ggufs():
    from embinspect.sources.gguf_file import FILE_TYPES

    # 1024 is GUESSED, what llama.cpp says when a file declares no type.
    # Every type this gguf names (an older gguf, as at its floor, names fewer of them).
    names = {t.value: t.name.removeprefix("MOSTLY_") for t in LlamaFileType if t.value < 1024}
    names = {value: name.removeprefix("ALL_") for value, name in names.items()}
    assert {value: FILE_TYPES.get(value) for value in names} == names


@pytest.mark.parametrize(("file_type", "name"), [(39, "NVFP4"), (40, "Q1_0")])
def test_newest_file_types_are_named_in_info(cli, tmp_path, file_type, name):
    from gguf import GGUFValueType as V

    path = gguf_with(tmp_path, "typed.gguf", {"general.file_type": (file_type, V.UINT32)})
    assert cli("info", path, "-f", "json").json()["gguf"]["file_type"] == name
    assert f"file type {name}" in cli("info", path, "-f", "table").stdout


def test_deeply_nested_metadata(cli, gguf_path, tmp_path):
    """An array of arrays of ... 1,000 deep, as the first metadata entry: one line."""
    magic_and_version = gguf_path.read_bytes()[:8]
    counts = struct.pack("<QQ", 0, 1)  # no tensors, one metadata entry
    key = b"x.nested"
    entry = struct.pack("<Q", len(key)) + key + struct.pack("<I", 9)  # an array ...
    entry += struct.pack("<IQ", 9, 1) * 1000 + struct.pack("<IQ", 4, 0)  # ... of arrays
    path = tmp_path / "nested.gguf"
    path.write_bytes(magic_and_version + counts + entry)
    assert_one_line_error(cli("info", path), EXIT_MODEL, "'x.nested' (arrays nested too deep)")


# --- the GGUF tokenizer cache: verified before use, never left half-built ----------------

# A byte-level BPE vocabulary small enough to convert in milliseconds.
TINY_TOKENS = ["<unk>", "<s>", "</s>", "k", "i", "n", "g", "q", "u", "e", "Ġ", "in", "ing",
               "king", "Ġking", "qu", "que", "en", "queen", "Ġqueen"]  # fmt: skip
TINY_MERGES = ["i n", "in g", "k ing", "Ġ king", "q u", "qu e", "e n", "que en", "Ġ queen"]


@pytest.fixture
def tiny_gguf(tmp_path):
    """A small F32 GGUF whose metadata holds a GPT-2-style tokenizer of 20 tokens."""
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def write_tiny_gguf(
    path: Path, tokens: list[str] = TINY_TOKENS, merges: list[str] = TINY_MERGES
) -> Path:
    """A small F32 GGUF at ``path`` whose metadata holds a GPT-2-style tokenizer (converted
    in milliseconds)."""
    writer = GGUFWriter(path, "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * len(tokens))
    writer.add_token_merges(merges)
    rows = np.random.default_rng(0).standard_normal((len(tokens), 16))
    writer.add_tensor(TOKEN_TABLE, rows.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tiny_answers(cli, gguf, env) -> tuple[list[int], list[dict], str]:
    """(ids of "king queen", neighbors of king and queen, both runs' stderr) from one GGUF."""
    tokens = cli("tokens", gguf, "king queen", "-f", "json", env=env)
    ids = [t["token_id"] for t in tokens.json()["tokens"]]
    neighbors = cli("neighbors", gguf, "king", "queen", "-k", "3", "-f", "json", env=env)
    return ids, neighbors.json(), tokens.stderr + neighbors.stderr


def cache_entries(cache) -> list:
    return (
        sorted((cache / "gguf-tokenizers").iterdir())
        if (cache / "gguf-tokenizers").exists()
        else []
    )


def another_vocabulary() -> str:
    """A valid tokenizer.json that reads "king" and "queen" as other ids (3 and 7)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"<unk>": 0, "king": 3, "queen": 7}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer.to_str()


def tampered_vocabulary(entry):
    entry.write_text(another_vocabulary())  # a bare tokenizer.json under the entry's name


def content_swapped(entry):
    record = json.loads(entry.read_text())
    record["content"] = another_vocabulary()  # the recorded digest left as it was
    entry.write_text(json.dumps(record))


def another_sources_entry(entry):
    record = json.loads(entry.read_text())
    record["content"] = another_vocabulary()
    record["sha256"] = hashlib.sha256(record["content"].encode()).hexdigest()  # consistent
    record["source"]["gguf_metadata_sha256"] = "0" * 64  # ... but derived from another file
    entry.write_text(json.dumps(record))


def truncated(entry):
    entry.write_bytes(entry.read_bytes()[:1000])


def emptied(entry):
    entry.write_bytes(b"")


@pytest.mark.parametrize(
    "tamper",
    [tampered_vocabulary, content_swapped, another_sources_entry, truncated, emptied],
    ids=["tampered-vocabulary", "content-swapped", "another-sources-entry", "truncated", "empty"],
)
def test_a_gguf_tokenizer_cache_that_does_not_match_its_record_is_rebuilt(
    cli, tiny_gguf, tmp_path, tamper
):
    cache = tmp_path / "cache"
    env = {"EMBINSPECT_CACHE": str(cache)}
    ids, neighbors, stderr = tiny_answers(cli, tiny_gguf, env)
    assert ids == [TINY_TOKENS.index("king"), TINY_TOKENS.index("Ġqueen")]
    assert stderr == ""
    [entry] = cache_entries(cache)
    tamper(entry)
    rebuilt = tiny_answers(cli, tiny_gguf, env)
    assert rebuilt[:2] == (ids, neighbors)  # the answers of a fresh build
    note = f"cached tokenizer of {tiny_gguf} ({entry}) does not match its record; building it again"
    assert rebuilt[2].splitlines() == [f"embinspect: note: {note}"]
    assert cache_entries(cache) == [entry]
    assert tiny_answers(cli, tiny_gguf, env) == (ids, neighbors, "")  # kept again, and trusted


def test_the_gguf_tokenizer_cache_records_what_it_was_derived_from(cli, tiny_gguf, tmp_path):
    from transformers import __version__ as transformers_version

    cache = tmp_path / "cache"
    cli("tokens", tiny_gguf, "king", env={"EMBINSPECT_CACHE": str(cache)})
    [entry] = cache_entries(cache)
    record = json.loads(entry.read_text())
    # The metadata: the header up to the end of its last key-value field, as gguf reads it.
    fields = GGUFReader(tiny_gguf).fields.values()
    metadata_end = max(f.offset + sum(part.nbytes for part in f.parts) for f in fields)
    metadata = tiny_gguf.read_bytes()[:metadata_end]
    assert record["source"]["gguf_metadata_sha256"] == hashlib.sha256(metadata).hexdigest()
    assert record["source"]["transformers"] == transformers_version
    assert entry.name == (
        f"{record['source']['gguf_metadata_sha256']}-transformers-{transformers_version}"
        ".tokenizer.json"
    )
    stat = tiny_gguf.stat()
    assert record["provenance"] == {
        "path": str(tiny_gguf), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
    }  # fmt: skip
    assert record["sha256"] == hashlib.sha256(record["content"].encode()).hexdigest()
    assert json.loads(record["content"])["model"]["vocab"]["Ġking"] == TINY_TOKENS.index("Ġking")


def interrupt_the_conversion(monkeypatch, temporary):
    from transformers import AutoTokenizer

    def interrupted(*args, **kwargs):
        assert [p.name.startswith("embinspect-gguf-") for p in temporary.iterdir()] == [True]
        raise KeyboardInterrupt

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", staticmethod(interrupted))


def interrupt_the_cache_write(monkeypatch, temporary):
    """Ctrl-C once the entry is written under its temporary name, before the rename."""
    import embinspect.sources.files

    def interrupted(source, target):
        assert Path(source).name.endswith(".incomplete") and Path(source).stat().st_size > 0
        raise KeyboardInterrupt

    monkeypatch.setattr(embinspect.sources.files.os, "replace", interrupted)


@pytest.mark.parametrize(
    "interrupt",
    [interrupt_the_conversion, interrupt_the_cache_write],
    ids=["during-the-conversion", "during-the-cache-write"],
)
def test_an_interrupted_gguf_tokenizer_build_leaves_nothing_behind(
    cli, tiny_gguf, tmp_path, monkeypatch, interrupt
):
    temporary, cache = tmp_path / "tmp", tmp_path / "cache"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    env = {"EMBINSPECT_CACHE": str(cache)}
    interrupt(monkeypatch, temporary)
    assert cli("tokens", tiny_gguf, "king", env=env).returncode == 130
    assert list(temporary.iterdir()) == []
    assert [p for p in cache.rglob("*") if not p.is_dir()] == []
    monkeypatch.undo()  # the next run is not interrupted, and needs no cleaning up first
    ids = [
        t["token_id"]
        for t in cli("tokens", tiny_gguf, "king", "-f", "json", env=env).json()["tokens"]
    ]
    assert ids == [TINY_TOKENS.index("king")]
    assert len(cache_entries(cache)) == 1


@pytest.mark.slow  # a process converting SmolLM2's 49,152-token vocabulary (seconds)
def test_ctrl_c_during_a_gguf_tokenizer_build_leaves_nothing_behind(gguf_path, tmp_path):
    temporary, cache = tmp_path / "tmp", tmp_path / "cache"
    temporary.mkdir()
    env = _cli_env({"EMBINSPECT_CACHE": str(cache), "TMPDIR": str(temporary)})
    process = subprocess.Popen(  # Ctrl-C raises KeyboardInterrupt even under `pytest &`
        [sys.executable, "-c", WITH_CTRL_C, "tokens", gguf_path, "king"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(temporary.glob("embinspect-gguf-*")):  # the build has begun
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert list(temporary.iterdir()) == []
    assert [p for p in cache.rglob("*") if not p.is_dir()] == []
