"""`embinspect info` on the three real checkpoints: roles, shapes, dtypes, shards, tying,
padding rows and position schemes, asserted exactly against an independent reading."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from reference import tensor_shapes


def by_role(info: dict) -> dict[str, dict]:
    return {t["role"]: t for t in info["tensors"]}


def test_minilm_roles_shapes_and_learned_positions(cli, minilm):
    info = cli("info", minilm, "--format", "json").json()
    tensors = by_role(info)
    assert list(tensors) == ["token", "position", "token_type"]
    assert tensors["token"] == {
        "role": "token",
        "name": "embeddings.word_embeddings.weight",
        "shape": [30522, 384],
        "dtype": "F32",
        "file": "model.safetensors",
        "bytes": 30522 * 384 * 4,
        "family": tensors["token"]["family"],
    }
    assert tensors["position"]["name"] == "embeddings.position_embeddings.weight"
    assert tensors["position"]["shape"] == [512, 384]
    assert tensors["token_type"]["shape"] == [2, 384]
    # embeddings.position_ids is an int64 buffer in the same file, not an embedding
    assert "embeddings.position_ids" in tensor_shapes(minilm)
    assert all(t["dtype"] == "F32" for t in info["tensors"])
    assert info["vocab_size"] == 30522
    assert info["rows"] == 30522
    assert info["padding_rows"] == 0
    assert info["hidden_size"] == 384
    # BertModel (sentence-transformers) has no output head at all: not "tied"
    assert (info["tied"], info["tied_reason"]) == (None, "none: BertModel has no output head")
    assert info["position"] == {
        "kind": "learned",
        "tensor": "embeddings.position_embeddings.weight",
        "positions": 512,
        "first_position_id": 0,
    }


def test_param_counts_match_an_independent_count(cli, minilm):
    info = cli("info", minilm, "--format", "json").json()
    shapes = tensor_shapes(minilm)
    total = sum(math.prod(shape) for _, shape, _ in shapes.values())
    embedding = sum(math.prod(shapes[t["name"]][1]) for t in info["tensors"])
    assert info["total_params"] == total
    assert info["total_params_exact"] is True
    assert info["embedding_params"] == embedding
    assert info["embedding_share"] == pytest.approx(embedding / total)


def test_smollm2_bf16_shards_tied_and_rotary(cli, smollm2):
    info = cli("info", smollm2, "--format", "json").json()
    shapes = tensor_shapes(smollm2)
    assert list(by_role(info)) == ["token"]
    token = by_role(info)["token"]
    dtype, shape, shard = shapes["model.embed_tokens.weight"]
    assert (token["name"], token["shape"], token["dtype"]) == (
        "model.embed_tokens.weight",
        [49152, 576],
        "BF16",
    )
    assert (shape, dtype) == ([49152, 576], "BF16")
    assert token["file"] == shard
    index = json.loads((smollm2 / "model.safetensors.index.json").read_text())
    assert token["file"] == index["weight_map"]["model.embed_tokens.weight"]
    assert len(set(index["weight_map"].values())) > 1
    assert token["bytes"] == 49152 * 576 * 2
    assert info["tied"] is True
    assert "lm_head.weight" not in shapes
    assert (info["vocab_size"], info["rows"], info["padding_rows"]) == (49152, 49152, 0)
    assert info["hidden_size"] == 576
    assert info["total_params"] == sum(math.prod(s) for _, s, _ in shapes.values())
    position = info["position"]
    assert position["kind"] == "rotary"
    assert position["theta"] == 100000.0
    assert position["head_dim"] == 64
    assert position["rotary_dims"] == 64
    assert position["partial_rotary_factor"] == 1.0
    assert position["max_positions"] == 8192


def test_gpt2_layout_padding_rows_and_learned_positions(cli, gpt2):
    info = cli("info", gpt2, "--format", "json").json()
    shapes = tensor_shapes(gpt2)
    tensors = by_role(info)
    assert list(tensors) == ["token", "position"]
    for role, name, shape in [
        ("token", "transformer.wte.weight", [50304, 128]),
        ("position", "transformer.wpe.weight", [1024, 128]),
    ]:
        assert tensors[role]["name"] == name
        assert tensors[role]["shape"] == shape == shapes[name][1]
        assert tensors[role]["dtype"] == "F32"
        assert tensors[role]["file"] == shapes[name][2]
    assert info["tied"] is True
    # 50257 real GPT-2 tokens (vocab.json) in a table padded to 50304 rows, as nanoGPT does
    assert (info["vocab_size"], info["vocab_source"]) == (50257, "vocab.json")
    assert (info["rows"], info["padding_rows"]) == (50304, 47)
    assert info["position"]["kind"] == "learned"
    assert info["position"]["positions"] == 1024


def test_default_format_in_a_pipe_is_tsv_with_a_header(cli, minilm):
    run = cli("info", minilm)
    rows = dict(line.split("\t", 1) for line in run.stdout.splitlines())
    assert rows["field"] == "value"
    assert rows["tensors.0.name"] == "embeddings.word_embeddings.weight"
    assert rows["tensors.0.shape"] == "30522 384"
    assert rows["padding_rows"] == "0"


def test_tensor_override(cli, minilm):
    info = cli(
        "info", minilm, "--tensor", "embeddings.position_embeddings.weight", "--format", "json"
    ).json()
    assert by_role(info)["token"]["name"] == "embeddings.position_embeddings.weight"


# --- the output head: tied, untied, or none at all -----------------------------------------


def test_minilm_table_says_no_output_head(cli, minilm):
    run = cli("info", minilm, "--format", "table")
    lines = [" ".join(line.split()) for line in run.stdout.splitlines()]
    assert "output head none: BertModel has no output head" in lines
    assert not any("tied" in line for line in lines)


def test_smollm2_tied_reason_names_the_flag_less_head(cli, smollm2):
    info = cli("info", smollm2, "--format", "json").json()
    assert (info["tied"], info["tied_reason"]) == (
        True,
        "no output tensor is stored: the head reuses the token table",
    )


def small_folder(path, config: dict, names: tuple[str, ...]):
    """A folder of one safetensors file holding ``names`` (8 x 4 f32) and config.json."""
    from safetensors.numpy import save_file

    path.mkdir()
    tables = {
        name: np.arange(32, dtype=np.float32).reshape(8, 4) + i for i, name in enumerate(names)
    }
    save_file(tables, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(config))
    return path


HEADS = [
    pytest.param(
        {"architectures": ["BertForMaskedLM"]},
        ("bert.embeddings.word_embeddings.weight",),
        (True, "no output tensor is stored: the head reuses the token table"),
        id="masked-lm-without-stored-head-is-tied",
    ),
    pytest.param(
        {"architectures": ["LlamaForCausalLM"], "tie_word_embeddings": False},
        ("model.embed_tokens.weight", "lm_head.weight"),
        (False, "separate output tensor lm_head.weight"),
        id="causal-lm-with-stored-head-is-untied",
    ),
    pytest.param(
        {"architectures": ["LlamaForCausalLM"], "tie_word_embeddings": True},
        ("model.embed_tokens.weight", "lm_head.weight"),
        (True, "tie_word_embeddings is true: lm_head.weight is a stored copy"),
        id="tied-flag-with-stored-copy",
    ),
    pytest.param(
        {"architectures": ["GPT2Model"]},
        ("wte.weight",),
        (None, "none: GPT2Model has no output head"),
        id="base-model-has-no-head",
    ),
    pytest.param(
        {"architectures": ["BertForSequenceClassification"]},
        ("bert.embeddings.word_embeddings.weight",),
        (None, "none: BertForSequenceClassification has no output head"),
        id="classifier-has-no-head",
    ),
    pytest.param(
        {"model_type": "llama", "tie_word_embeddings": False},
        ("model.embed_tokens.weight",),
        (None, "none: no output tensor is stored and tie_word_embeddings is false"),
        id="untied-flag-and-no-head-stored",
    ),
]


@pytest.mark.parametrize(("config", "names", "expected"), HEADS)
def test_output_head_from_config_and_tensors(cli, tmp_path, config, names, expected):
    folder = small_folder(tmp_path / "model", config, names)
    info = cli("info", folder, "--format", "json").json()
    assert (info["tied"], info["tied_reason"]) == expected


def test_table_output_on_a_model_without_a_head_is_refused(cli, minilm):
    run = cli("neighbors", minilm, "king", "--table", "output")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == (
        f"embinspect: error: {minilm}: BertModel has no output head; "
        "--table output reads an output head\n"
    )


def test_api_info_tied_is_none_without_a_head(minilm):
    import embinspect
    from embinspect.errors import UsageError

    model = embinspect.load(minilm)
    info = model.info()
    assert info.tied is None and info.to_dict()["tied"] is None
    assert info.tied_reason == "none: BertModel has no output head"
    with pytest.raises(UsageError, match="BertModel has no output head"):
        model.stats(table="output")
