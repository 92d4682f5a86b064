"""User mistakes: one line on stderr, a documented exit code, never a traceback."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zipfile

import pytest
import torch
from safetensors.torch import save_file

EXIT_USAGE, EXIT_MODEL = 2, 3


def assert_one_line_error(run, code: int, *fragments: str) -> None:
    assert run.returncode == code, (run.returncode, run.stderr)
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("embinspect: error: ")
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_no_such_path(cli, tmp_path):
    run = cli("info", tmp_path / "nothing-here")
    assert_one_line_error(run, EXIT_MODEL, "no such file or directory")


def test_pickle_file_is_refused_never_loaded(cli, tmp_path):
    bin_path = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(bin_path, "w") as archive:  # what torch.save writes
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    assert_one_line_error(cli("info", bin_path), EXIT_MODEL, "pickle", "never unpickles")
    assert_one_line_error(cli("info", tmp_path), EXIT_MODEL, "pickle")
    renamed = tmp_path / "weights.safetensors"
    renamed.write_bytes(bin_path.read_bytes())
    assert_one_line_error(cli("info", renamed), EXIT_MODEL, "pickle")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "not a safetensors file"),
        (b"\x00" * 3, "not a safetensors file"),
        (struct.pack("<Q", 10**12) + b"{}", "header length"),
        (struct.pack("<Q", 9) + b"not json!", "unreadable safetensors header"),
        (
            safetensors_bytes({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}),
            "truncated",
        ),
    ],
)
def test_not_a_safetensors_file(cli, tmp_path, content, fragment):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    assert_one_line_error(cli("info", path), EXIT_MODEL, fragment)


def test_folder_without_weights(cli, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert_one_line_error(cli("info", tmp_path), EXIT_MODEL, "no .safetensors weights")


def test_no_embedding_tensor(cli, tmp_path):
    save_file({"encoder.dense.weight": torch.zeros(4, 4)}, str(tmp_path / "model.safetensors"))
    run = cli("info", tmp_path)
    assert_one_line_error(run, EXIT_MODEL, "no token embedding tensor", "--tensor")
    # ... and naming it works
    info = cli("info", tmp_path, "--tensor", "encoder.dense.weight", "--format", "json").json()
    assert info["tensors"][0]["name"] == "encoder.dense.weight"
    bad = cli("info", tmp_path, "--tensor", "missing.weight")
    assert_one_line_error(bad, EXIT_MODEL, "missing.weight")


def test_single_file_has_no_tokenizer(cli, minilm):
    run = cli("tokens", minilm / "model.safetensors", "cat")
    assert_one_line_error(run, EXIT_USAGE, "no tokenizer", "--tokenizer")
    # --tokenizer supplies one
    ok = cli(
        "tokens",
        minilm / "model.safetensors",
        "cat",
        "--tokenizer",
        minilm / "tokenizer.json",
        "--format",
        "json",
    ).json()
    assert [t["token_id"] for t in ok["tokens"]] == [4937]


def test_bad_option_is_a_usage_error(cli, minilm):
    run = cli("info", minilm, "--format", "yaml")
    assert_one_line_error(run, EXIT_USAGE, "'--format'", "'yaml' is not one of", "info --help")
    assert_one_line_error(cli("info"), EXIT_USAGE, "Missing argument 'MODEL'")
    assert_one_line_error(cli("bogus"), EXIT_USAGE, "No such command 'bogus'")


def test_debug_shows_the_traceback(cli, tmp_path):
    run = cli("info", tmp_path / "missing", env={"EMBINSPECT_DEBUG": "1"})
    assert run.returncode != 0
    assert "Traceback" in run.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["neighbors", "{m}", "king", "--metric", "manhattan"], "'--metric'"),
        (["neighbors", "{m}", "king", "--device", "cuda:7"], "--device cuda:7"),
        (["neighbors", "{m}", "king", "--table", "middle"], "'--table'"),
        (["neighbors", "{m}", "king", "--filter", "nouns"], "'--filter'"),
        (["neighbors", "{m}", "king", "--pool", "max"], "'--pool'"),
        (["compare", "{m}", "king"], "at least two"),
        (["analogy", "{m}", "king", "man"], "three queries"),
        (["analogy", "{m}", "king", "man", "woman", "--method", "cos"], "'--method'"),
    ],
)
def test_query_usage_errors(cli, minilm, args, fragment):
    run = cli(*[a.format(m=minilm) for a in args])
    assert_one_line_error(run, EXIT_USAGE, fragment)


def test_unresolvable_queries_exit_4(cli, minilm, tmp_path):
    run = cli("neighbors", minilm, "=notaword", "-f", "json")
    assert run.returncode == 4
    assert json.loads(run.stdout) == [
        {"query": "=notaword", "error": "=notaword: no vocabulary entry spelled exactly so"}
    ]
    compare = cli("compare", minilm, "cat", "dog", "#-5", "-f", "json")
    assert compare.returncode == 4
    assert [i["query"] for i in json.loads(compare.stdout)["items"]] == ["cat", "dog"]
    assert "#-5" in compare.stderr
    # a lone .safetensors file has no tokenizer: ids work, text says what to do
    lone = cli("neighbors", minilm / "model.safetensors", "#2332", "king", "-k", "1", "-f", "json")
    assert lone.returncode == 4
    answers = json.loads(lone.stdout)
    assert answers[0]["neighbors"][0]["token_id"] == 5465
    assert "--tokenizer" in answers[1]["error"]


def test_empty_model_argument(cli):
    assert_one_line_error(cli("info", ""), EXIT_MODEL, "MODEL is empty")


def test_malformed_index_and_tokenizer_json(cli, minilm, tmp_path):
    shutil.copyfile(minilm / "model.safetensors", tmp_path / "model-1.safetensors")
    index = {
        "metadata": "x",
        "weight_map": {"embeddings.word_embeddings.weight": "model-1.safetensors"},
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": "x", "added_tokens": "y"}))
    info = cli("info", tmp_path, "-f", "json")
    assert info.returncode == 0, info.stderr
    assert info.json()["vocab_size"] is None


def test_tokenizer_path_that_does_not_exist(cli, minilm, tmp_path):
    run = cli("tokens", minilm, "cat", "--tokenizer", tmp_path / "nope" / "tokenizer.json")
    assert_one_line_error(run, EXIT_USAGE, "no such file or directory")


def test_closed_pipe_ends_quietly_with_zero(minilm):
    # `| head -2`: the reader leaves early; the writer must not report an error.
    script = (
        f"seq 1 3000 | sed 's/^/#/' | {sys.executable} -m embinspect neighbors {minilm} - "
        '-f tsv | head -2; echo "exit=${PIPESTATUS[2]}"'
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.splitlines()[-1] == "exit=0"
    assert "Traceback" not in done.stderr and "error" not in done.stderr


def test_stdin_lines_are_stripped(minilm):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "embinspect",
            "neighbors",
            str(minilm),
            "-",
            "-k",
            "1",
            "-f",
            "jsonl",
        ],
        input="  king \t\n",
        capture_output=True,
        text=True,
    )
    answer = json.loads(done.stdout)
    assert (answer["query"], answer["tokens"]) == ("king", ["king"])
