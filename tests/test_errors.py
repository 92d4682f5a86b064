"""User mistakes: one line on stderr, a documented exit code, never a traceback."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import Run, run_cli, run_process
from safetensors import safe_open
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


def test_unknown_scan_engine_is_a_usage_error(cli, minilm):
    run = cli("neighbors", minilm, "king", env={"EMBINSPECT_SCAN": "gpu"})
    assert_one_line_error(run, EXIT_USAGE, "EMBINSPECT_SCAN='gpu': use auto, numpy or torch")


def test_debug_shows_the_traceback(cli_process, tmp_path):
    # A process: the error escapes main, and Python itself prints the traceback.
    run = cli_process("info", tmp_path / "missing", env={"EMBINSPECT_DEBUG": "1"})
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
    (answer,) = json.loads(run.stdout)
    assert (answer["query"], answer["error"]) == (
        "=notaword",
        "=notaword: no vocabulary entry spelled exactly so",
    )
    assert "neighbors" not in answer
    compare = cli("compare", minilm, "cat", "dog", "#-5", "-f", "json")
    assert compare.returncode == 4
    assert [i["query"] for i in json.loads(compare.stdout)["items"]] == ["cat", "dog"]
    assert "#-5" in compare.stderr
    # a lone .safetensors file has no tokenizer: ids work, text says what to do
    lone = cli("neighbors", minilm / "model.safetensors", "#2332", "king", "-k", "1", "-f", "json")
    assert lone.returncode == 4
    answers = json.loads(lone.stdout)
    assert answers[0]["neighbors"][0]["token_id"] == 5465
    assert "give a tokenizer" in answers[1]["error"]


# A text query needs a tokenizer. Without one (a lone .safetensors file, no --tokenizer) it
# is that query's error, exit 4, and the other queries are answered; `tokens`, all text,
# is a usage error (2), and so is a plot left with fewer than two points.
def _no_tokenizer(query: str) -> str:
    return f"embinspect: error: '{query}': no tokenizer; query by id (#1234) or give a tokenizer"


@pytest.mark.parametrize(
    ("args", "answered", "stderr"),
    [
        (
            ["neighbors", "#2332", "king", "-k", "1"],
            lambda doc: [r["query"] for r in doc if "error" not in r],
            [_no_tokenizer("king")],
        ),
        (
            ["neighbors", "king", "queen"],
            lambda doc: [r["query"] for r in doc if "error" not in r],
            [_no_tokenizer("king"), _no_tokenizer("queen")],
        ),
        (
            ["compare", "#4937", "#3899", "cat"],
            lambda doc: [item["query"] for item in doc["items"]],
            [_no_tokenizer("cat")],
        ),
        (
            ["analogy", "king", "man", "woman"],
            lambda doc: [r["formula"] for r in doc if "error" not in r],
            [_no_tokenizer("king")],
        ),
        (
            ["plot", "#2332", "#3035", "king"],
            lambda doc: [point["label"] for point in doc["points"]],
            [_no_tokenizer("king")],
        ),
    ],
    ids=["neighbors", "neighbors-all-text", "compare", "analogy", "plot"],
)
def test_text_query_without_tokenizer_is_that_querys_error(cli, minilm, args, answered, stderr):
    run = cli(args[0], minilm / "model.safetensors", *args[1:], "--format", "json")
    assert run.returncode == 4, run.stderr
    assert run.stderr.splitlines() == stderr
    expected = [a for a in args[1:] if a.startswith("#")]
    assert answered(json.loads(run.stdout)) == expected


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["tokens", "The cat"],
            "{m}: no tokenizer files; query by token id (#1234) or pass --tokenizer PATH_OR_ID",
        ),
        (
            ["plot", "#2332", "king"],
            "plot needs at least two points that resolve (queries or neighbors)",
        ),
    ],
    ids=["tokens", "plot-one-point-left"],
)
def test_text_without_tokenizer_is_a_usage_error_where_nothing_is_left(cli, minilm, args, error):
    model = minilm / "model.safetensors"
    run = cli(args[0], model, *args[1:])
    assert (run.returncode, run.stdout) == (EXIT_USAGE, "")
    assert run.stderr.splitlines() == ["embinspect: error: " + error.format(m=model)]


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


@pytest.mark.slow
def test_closed_pipe_ends_quietly_with_zero(minilm):
    # `| head -2`: the reader leaves early; the writer must not report an error.
    script = (
        f"seq 1 3000 | sed 's/^/#/' | {sys.executable} -m embinspect neighbors {minilm} - "
        '-f tsv | head -2; echo "exit=${PIPESTATUS[2]}"'
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.splitlines()[-1] == "exit=0"
    assert "Traceback" not in done.stderr and "error" not in done.stderr


def test_the_installed_command_ends_at_once_with_its_output_and_code(minilm, tmp_path):
    """The console script (``cli.entry``) ends its process without the interpreter's
    teardown: what it wrote to a file is all there, in order, its error line is on
    stderr, and the exit code is ``main``'s (4: a query could not be answered)."""
    script = Path(sys.executable).with_name("embinspect")
    assert script.is_file(), "the project is installed with its console script"
    ids = list(range(0, 30_000, 97))  # a batch through torch's scan, then the bad one
    lines = "".join(f"#{i}\n" for i in ids) + "#99999999\n"
    out = tmp_path / "answers.jsonl"
    with open(out, "w") as stdout:
        done = subprocess.run(
            [str(script), "neighbors", str(minilm), "-", "-k", "3", "-f", "jsonl"],
            input=lines, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300,
        )  # fmt: skip
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert done.returncode == 4, done.stderr
    assert [a["query"] for a in answers] == [f"#{i}" for i in ids] + ["#99999999"]
    assert all(len(a["neighbors"]) == 3 for a in answers[:-1])
    assert done.stderr.strip().splitlines() == ["embinspect: error: " + answers[-1]["error"]]


def test_stdin_lines_are_stripped(cli, minilm):
    done = cli("neighbors", minilm, "-", "-k", "1", "-f", "jsonl", input="  king \t\n")
    answer = json.loads(done.stdout)
    assert (answer["query"], answer["tokens"]) == ("king", ["king"])


# --- paths ----------------------------------------------------------------------------


def test_empty_folder(cli, tmp_path):
    run = cli("info", tmp_path)
    assert_one_line_error(run, EXIT_MODEL, "no .safetensors weights in this folder")


def test_other_formats_are_named(cli, minilm, tmp_path):
    # a GGUF file saved as a folder's model.safetensors is named for what it is
    gguf = tmp_path / "model.safetensors"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 64)
    assert_one_line_error(cli("info", tmp_path), EXIT_MODEL, "is a GGUF file, not safetensors")
    # a JSON file given as MODEL: its first 8 bytes read as an absurd header length
    run = cli("info", minilm / "config.json")
    assert_one_line_error(run, EXIT_MODEL, "not a safetensors file", "header length")


# Tests may run as root, for whom chmod 000 blocks nothing: root reads any file through
# the CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH capabilities. The CLI then runs as root
# without them (dropped from its bounding set before exec), so the check is real either way.
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def _without_permission_override() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture
def unreadable(minilm, tmp_path):
    """A MiniLM copy to take permissions from, and a runner that obeys them even as root."""
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copyfile(minilm / name, model / name)

    # A process: root's capabilities are dropped in the child, before it starts.
    def run_obeying_permissions(*args):
        if os.geteuid() != 0:
            return run_process(*args)
        try:
            return run_process(*args, preexec_fn=_without_permission_override)
        except subprocess.SubprocessError as err:
            pytest.skip(f"cannot drop root's file-permission override here: {err}")

    yield model, run_obeying_permissions
    for path in [model, *model.iterdir()]:
        path.chmod(0o755)


def test_unreadable_weights(unreadable):
    model, run = unreadable
    (model / "model.safetensors").chmod(0o000)
    assert_one_line_error(run("info", model), EXIT_MODEL, "model.safetensors: permission denied")
    single = run("neighbors", model / "model.safetensors", "#1")
    assert_one_line_error(single, EXIT_MODEL, "permission denied")


def test_unreadable_folder(unreadable):
    model, run = unreadable
    model.chmod(0o000)
    assert_one_line_error(run("info", model), EXIT_MODEL, f"{model}/", "permission denied")


def test_unreadable_config_is_a_warning(unreadable):
    model, run = unreadable
    (model / "config.json").chmod(0o000)
    info = run("info", model, "-f", "json")
    assert info.returncode == 0, info.stderr
    assert info.stderr.splitlines() == [
        f"embinspect: warning: {model / 'config.json'}: permission denied; "
        "going on without config.json"
    ]


def test_unreadable_tokenizer(unreadable):
    model, run = unreadable
    (model / "tokenizer.json").chmod(0o000)
    run_tokens = run("tokens", model, "king")
    assert_one_line_error(run_tokens, EXIT_MODEL, "tokenizer.json: cannot load tokenizer")


# --- safetensors files built from the real MiniLM weights ------------------------------


def minilm_copy(minilm, folder, header_edit=None, cut=None) -> Path:
    """MiniLM's model.safetensors (and tokenizer, config) in ``folder``, with its header
    changed by ``header_edit(header)`` and the file cut to ``cut`` bytes when given."""
    data = (minilm / "model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    if header_edit is not None:
        header = json.loads(data[8 : 8 + length])
        header_edit(header)
        raw = json.dumps(header).encode()
        data = struct.pack("<Q", len(raw)) + raw + data[8 + length :]
    if cut is not None:
        data = data[:cut]
    folder.mkdir(exist_ok=True)
    (folder / "model.safetensors").write_bytes(data)
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(minilm / name, folder / name)
    return folder


WORDS = "embeddings.word_embeddings.weight"


def _shift(name: str, by: int):
    def edit(header):
        start, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [start + by, end + by]

    return edit


def _overlap(header):
    # the position table starts inside the word table
    start, _ = header[WORDS]["data_offsets"]
    rows, dim = header["embeddings.position_embeddings.weight"]["shape"]
    header["embeddings.position_embeddings.weight"]["data_offsets"] = [
        start + 16,
        start + 16 + rows * dim * 4,
    ]


def _set(name: str, field: str, value):
    def edit(header):
        header[name][field] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "cut", "fragment"),
    [
        (None, 50_000_000, "truncated file: tensor"),
        (None, 100, "header length"),
        (_shift(WORDS, 10**12), None, "ends past the end of the data"),
        (_overlap, None, "overlap"),
        (_set(WORDS, "shape", [30522, 385]), None, "its offsets span 46881792 bytes"),
        (_set(WORDS, "shape", [30522, -384]), None, "unreadable safetensors header entry"),
        (_set(WORDS, "data_offsets", [9, 2]), None, "unreadable safetensors header entry"),
        (_set(WORDS, "data_offsets", ["0", 5]), None, "unreadable safetensors header entry"),
        (_set(WORDS, "dtype", 7), None, "unreadable safetensors header entry"),
    ],
    ids=["truncated", "header-longer-than-file", "offsets-outside", "overlap", "size-mismatch",
         "negative-dim", "reversed-offsets", "string-offset", "dtype-not-a-name"],
)  # fmt: skip
@pytest.mark.slow  # nine copies of a real 90 MB shard: `make test` runs it
def test_broken_real_shard(cli, minilm, tmp_path, edit, cut, fragment):
    folder = minilm_copy(minilm, tmp_path / "model", edit, cut)
    for command in (["info", folder], ["neighbors", folder, "king"], ["tokens", folder, "king"]):
        assert_one_line_error(cli(*command), EXIT_MODEL, fragment)


def test_header_length_prefix_larger_than_the_file(cli, minilm, tmp_path):
    folder = minilm_copy(minilm, tmp_path / "model")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[:8] = struct.pack("<Q", len(data))  # one prefix more than the file holds
    (folder / "model.safetensors").write_bytes(bytes(data))
    assert_one_line_error(
        cli("info", folder), EXIT_MODEL, f"header length {len(data)} does not fit"
    )


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"[1, 2, 3]", "not a JSON object"),
        (b"\xff\xfe{}", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 1' + b"0" * 5000 + b"]}}",
         "not JSON"),
    ],
    ids=["array", "not-utf8", "nested-too-deep", "huge-integer"],
)  # fmt: skip
def test_header_json_that_is_not_a_header(cli, tmp_path, raw, fragment):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    assert_one_line_error(cli("info", path), EXIT_MODEL, fragment)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int64, torch.bool, torch.uint8])
def test_integer_and_bool_tables_are_refused_by_name(cli, tmp_path, dtype):
    table = (torch.arange(64 * 8).reshape(64, 8) % 3).to(dtype)
    path = tmp_path / "table.safetensors"
    save_file({"transformer.wte.weight": table}, str(path))
    stored = {torch.int8: "I8", torch.int64: "I64", torch.bool: "BOOL", torch.uint8: "U8"}[dtype]
    for command in ("info", "neighbors"):
        args = [command, path] + (["#1"] if command == "neighbors" else [])
        run = cli(*args)
        assert_one_line_error(
            run, EXIT_MODEL, f"transformer.wte.weight: dtype {stored} cannot be read", "F8_E4M3"
        )
    chosen = cli("neighbors", path, "#1", "--tensor", "transformer.wte.weight")
    assert_one_line_error(chosen, EXIT_MODEL, f"is {stored} of shape [64, 8]")


# --- index, config and tokenizer files --------------------------------------------------


def sharded_minilm(minilm, folder, weight_map=None, index_text=None) -> Path:
    """MiniLM as one shard named model-00001-of-00001.safetensors with an index."""
    folder.mkdir(exist_ok=True)
    shard = "model-00001-of-00001.safetensors"
    shutil.copyfile(minilm / "model.safetensors", folder / shard)
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(minilm / name, folder / name)
    if weight_map is None:
        with safe_open(str(folder / shard), "np") as handle:
            weight_map = {name: shard for name in handle.keys()}  # noqa: SIM118
    if index_text is None:
        index_text = json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map})
    (folder / "model.safetensors.index.json").write_text(index_text)
    return folder


def test_index_problems(cli, minilm, tmp_path):
    index = "model.safetensors.index.json"
    bad_json = sharded_minilm(minilm, tmp_path / "a", index_text='{"weight_map": {')
    assert_one_line_error(cli("info", bad_json), EXIT_MODEL, f"{index}: not valid JSON")
    missing = sharded_minilm(minilm, tmp_path / "b", {WORDS: "model-00001-of-00002.safetensors"})
    assert_one_line_error(
        cli("neighbors", missing, "king"),
        EXIT_MODEL,
        "shard model-00001-of-00002.safetensors is named in the index's weight_map but is missing",
    )
    elsewhere = sharded_minilm(
        minilm, tmp_path / "c", {WORDS: "model-00001-of-00001.safetensors",
                                 "lm_head.weight": "model-00001-of-00001.safetensors"},
    )  # fmt: skip
    assert_one_line_error(
        cli("info", elsewhere),
        EXIT_MODEL,
        "index lists 'lm_head.weight' in model-00001-of-00001.safetensors, but that shard "
        "does not hold it",
    )
    outside = sharded_minilm(minilm, tmp_path / "d", {WORDS: "../model.safetensors"})
    assert_one_line_error(cli("info", outside), EXIT_MODEL, "bad shard name '../model.safetensors'")
    no_map = sharded_minilm(minilm, tmp_path / "e", index_text='{"weight_map": []}')
    assert_one_line_error(cli("info", no_map), EXIT_MODEL, "index has no weight_map")
    odd_size = sharded_minilm(
        minilm, tmp_path / "f",
        index_text=json.dumps({"metadata": {"total_size": float("nan")},
                               "weight_map": {WORDS: "model-00001-of-00001.safetensors"}}),
    )  # fmt: skip
    assert cli("info", odd_size, "-f", "json").json()["rows"] == 30522


@pytest.mark.parametrize(
    ("config", "warning"),
    [
        (None, "has no config.json; going on without it"),
        ("{not json", "config.json: not valid JSON"),
        ("[1, 2]", "config.json: expected a JSON object"),
        (json.dumps({"hidden_size": "big", "model_type": ["bert"], "pad_token_id": 1e400,
                     "max_position_embeddings": -3}), None),
    ],
    ids=["missing", "invalid", "array", "wrong-types"],
)  # fmt: skip
def test_config_problems_warn_and_scoring_goes_on(cli, minilm, tmp_path, config, warning):
    folder = minilm_copy(minilm, tmp_path / "model")
    if config is None:
        (folder / "config.json").unlink()
    else:
        (folder / "config.json").write_text(config)
    expected = [f"embinspect: warning: {warning}"] if warning else []
    info = cli("info", folder, "-f", "json")
    assert info.returncode == 0
    assert [line for line in info.stderr.splitlines()] == [
        line for line in info.stderr.splitlines() if line.startswith("embinspect: warning: ")
    ]
    assert len(info.stderr.splitlines()) == len(expected)
    if warning:
        assert warning in info.stderr
    assert info.json()["hidden_size"] == 384  # from the table when config gives none
    run = cli("neighbors", folder, "king", "-k", "1", "-f", "jsonl")
    assert run.jsonl()[0]["neighbors"][0]["token"] == "kings"
    assert len(run.stderr.splitlines()) == len(expected)


def test_corrupted_tokenizer_json(cli, minilm, tmp_path):
    folder = minilm_copy(minilm, tmp_path / "model")
    text = (folder / "tokenizer.json").read_text()
    (folder / "tokenizer.json").write_text(text[: len(text) // 2])  # a download cut short
    for command in (["tokens", folder, "king"], ["neighbors", folder, "king"]):
        assert_one_line_error(cli(*command), EXIT_MODEL, "tokenizer.json: cannot load tokenizer")
    info = cli("info", folder, "-f", "json")
    assert info.json()["vocab_size"] is None
    assert info.stderr.startswith("embinspect: warning: ")
    assert "tokenizer.json: not valid JSON" in info.stderr
    assert info.stderr.strip().endswith("; vocabulary size unknown")
    assert len(info.stderr.splitlines()) == 1


# --- queries ----------------------------------------------------------------------------


def assert_query_errors(run, answered: int, *messages: str) -> None:
    """Exit 4, one stderr line per failed query (exactly ``messages``), ``answered`` results."""
    assert run.returncode == 4, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines() == [f"embinspect: error: {m}" for m in messages]
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert sum("error" not in r for r in records) == answered


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("#30522", "#30522: outside the table (rows 0..30521)"),
        ("#-1", "#-1: outside the table (rows 0..30521)"),
        ("#1.5", "'#1.5': not a token id (write #1234)"),
        ("=notaword", "=notaword: no vocabulary entry spelled exactly so"),
        ("", "'': empty query (give a word, #id or =entry)"),
        ("  \t ", "'  \\t ': empty query (give a word, #id or =entry)"),
        ("x" * 5000, "'" + "x" * 60 + "'... (5,000 characters): a query is at most 4,096 "
         "characters"),
    ],
    ids=["past-the-end", "negative", "not-an-id", "not-in-vocab", "empty", "whitespace", "long"],
)  # fmt: skip
def test_bad_query_arguments(cli, minilm, query, message):
    run = cli("neighbors", minilm, "king", query, "-k", "1", "-f", "jsonl")
    assert_query_errors(run, 1, message)


@pytest.mark.parametrize("k", ["0", "-3"])
def test_top_k_below_one_is_a_usage_error(cli, minilm, k):
    for command in (["neighbors", minilm, "king"], ["analogy", minilm, "a", "b", "c"]):
        run = cli(*command, "-k", k)
        assert_one_line_error(run, EXIT_USAGE, "'--top-k' / '-k'", "greater than or equal to 1")


def test_top_k_beyond_the_table_lists_every_row(cli, near_tiny):
    run = cli("neighbors", near_tiny, "#3", "-k", "1000000", "-f", "json")
    ids = [n["token_id"] for n in run.json()[0]["neighbors"]]
    assert sorted(ids) == [i for i in range(50) if i != 3]
    assert run.stderr.splitlines() == [
        "embinspect: note: -k 1,000,000 is more than the 50 rows of wte.weight; listing every "
        "row that can be a result"
    ]


@pytest.fixture
def near_tiny(tmp_path):
    table = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "tiny.safetensors"
    save_file({"wte.weight": table}, str(path))
    return path


def stdin_run(args, data: bytes) -> Run:
    return run_cli(*args, input=data)


def test_analogy_lines_of_two_and_four_words(minilm):
    lines = b"king man woman\nking man\nparis france italy\nking man woman queen\n"
    run = stdin_run(["analogy", minilm, "-", "-k", "1", "-f", "jsonl"], lines)
    assert_query_errors(
        run,
        2,
        "expected three queries A B C, got 2: 'king man'",
        "expected three queries A B C, got 4: 'king man woman queen'",
    )
    formulas = [json.loads(line)["formula"] for line in run.stdout.splitlines()]
    assert formulas == [
        "king - man + woman", "king - man", "paris - france + italy", "king - man + woman",
    ]  # fmt: skip


def test_a_one_megabyte_line_and_invalid_utf8(minilm):
    huge = b"a" * (1 << 20)
    lines = b"king\n" + huge + b"\n\xff\xfe caf\xe9\nqueen\n" + b"na\xc3\xafve\n"
    run = stdin_run(["neighbors", minilm, "-", "-k", "1", "-f", "jsonl"], lines)
    assert_query_errors(
        run,
        3,
        "'" + "a" * 60 + "'... (1,048,576 characters): a query is at most 4,096 characters",
        "'\\xff\\xfe caf\\xe9': not valid UTF-8",
    )
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["query"] for r in records] == [
        "king", "a" * 60, "\\xff\\xfe caf\\xe9", "queen", "naïve",
    ]  # fmt: skip


# --- a hostile tokenizer ------------------------------------------------------------------

# Catastrophic backtracking: Oniguruma gives up on a long run of "a" (its retry limit), and
# tokenizers panics ("retry-limit-in-match over"); other text never matches and is fine.
BACKTRACKING = {"type": "Split", "pattern": {"Regex": "(a+)+b"}, "behavior": "Isolated"}
RUN_OF_A = "a" * 40
TOKENIZER_FAILS = "the tokenizer failed on it"


def minilm_tokenizer_with(minilm, tmp_path, **changes) -> Path:
    """MiniLM's own tokenizer.json with ``changes`` to its top-level fields, in tmp_path."""
    spec = json.loads((minilm / "tokenizer.json").read_text())
    spec.update(changes)
    path = tmp_path / "hostile-tokenizer.json"
    path.write_text(json.dumps(spec))
    return path


def panicking_on_runs_of_a(minilm, tmp_path) -> Path:
    """MiniLM's tokenizer, its BERT pre-tokenizer preceded by the backtracking Split: the
    same ids as MiniLM's for any text but a long run of "a", on which it panics."""
    sequence = [{**BACKTRACKING, "invert": False}, {"type": "BertPreTokenizer"}]
    pre_tokenizer = {"type": "Sequence", "pretokenizers": sequence}
    return minilm_tokenizer_with(minilm, tmp_path, pre_tokenizer=pre_tokenizer)


def erring_on_unknown_words(minilm, tmp_path) -> Path:
    """A word-level tokenizer of two words, at MiniLM's ids, whose unknown token is missing:
    tokenizers raises an Exception for any other word."""
    model = {"type": "WordLevel", "vocab": {"king": 2332, "queen": 3035}, "unk_token": "[UNK]"}
    return minilm_tokenizer_with(
        minilm,
        tmp_path,
        model=model,
        normalizer=None,
        pre_tokenizer={"type": "WhitespaceSplit"},
        post_processor=None,
        decoder=None,
        added_tokens=[],
    )


@pytest.mark.parametrize(
    ("hostile", "bad", "reason"),
    [
        (panicking_on_runs_of_a, RUN_OF_A, "Onig: Regex search error: retry-limit-in-match over"),
        (
            erring_on_unknown_words,
            "prince",
            "WordLevel error: Missing [UNK] token from the vocabulary",
        ),
    ],
    ids=["panic-in-pre-tokenizer-regex", "error-on-unknown-word"],
)
def test_a_tokenizer_failing_on_one_stdin_line_fails_that_line(
    minilm, tmp_path, hostile, bad, reason
):
    tokenizer = hostile(minilm, tmp_path)
    lines = f"king\n{bad}\nqueen\n".encode()
    args = ["neighbors", minilm, "-", "-k", "3", "-f", "jsonl", "--tokenizer", tokenizer]
    run = stdin_run(args, lines)
    assert run.returncode == 4, run.stderr
    message = f"{bad!r}: {TOKENIZER_FAILS} ({reason})"
    assert run.stderr.splitlines() == [f"embinspect: error: {message}"]
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert {k: records[1][k] for k in ("query", "error")} == {"query": bad, "error": message}
    assert records[1]["provenance"] == records[0]["provenance"]
    # The other lines are answered as they are without the failing one.
    assert [records[0], records[2]] == stdin_run(args, b"king\nqueen\n").jsonl()


def test_a_tokenizer_panicking_on_the_text_of_tokens(cli, minilm, tmp_path):
    tokenizer = panicking_on_runs_of_a(minilm, tmp_path)
    run = cli("tokens", minilm, f"the {RUN_OF_A}", "--tokenizer", tokenizer)
    assert_one_line_error(run, 4, f"'the {RUN_OF_A}': {TOKENIZER_FAILS}", "retry-limit")
    assert "PanicException" not in run.stderr
    # Text it can tokenize is answered, as MiniLM's own tokenizer answers it.
    answered = cli("tokens", minilm, "the king", "--tokenizer", tokenizer, "-f", "json").json()
    assert answered["tokens"] == cli("tokens", minilm, "the king", "-f", "json").json()["tokens"]
    assert [t["token_id"] for t in answered["tokens"]] == [1996, 2332]


def test_a_tokenizer_panicking_while_loading(cli, minilm, tmp_path):
    """A Precompiled normalizer whose character map is one byte: tokenizers panics while
    parsing the file."""
    charsmap = {"type": "Precompiled", "precompiled_charsmap": "AQ=="}  # base64 of b"\x01"
    tokenizer = minilm_tokenizer_with(minilm, tmp_path, normalizer=charsmap)
    for command in (["neighbors", minilm, "king"], ["tokens", minilm, "king"]):
        run = cli(*command, "--tokenizer", tokenizer)
        assert_one_line_error(
            run, EXIT_MODEL, f"{tokenizer}: cannot load tokenizer (Precompiled: ", "charsmap"
        )
        assert "PanicException" not in run.stderr


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
def test_a_tokenizer_panic_prints_one_line_and_no_rust_report(cli_process, minilm, tmp_path):
    """In a process of its own: Rust prints its panic report on file descriptor 2."""
    tokenizer = panicking_on_runs_of_a(minilm, tmp_path)
    run = cli_process(
        "neighbors", minilm, "-", "-k", "1", "-f", "jsonl", "--tokenizer", tokenizer,
        input=f"king\n{RUN_OF_A}\nqueen\n",
        env={"RUST_BACKTRACE": "1"},  # Rust's report would be a whole backtrace
    )  # fmt: skip
    assert run.returncode == 4, run.stderr
    assert run.stderr.splitlines() == [
        f"embinspect: error: {RUN_OF_A!r}: {TOKENIZER_FAILS} "
        "(Onig: Regex search error: retry-limit-in-match over)"
    ]
    assert [r["query"] for r in map(json.loads, run.stdout.splitlines())] == [
        "king", RUN_OF_A, "queen",
    ]  # fmt: skip


def test_undertrained_with_a_tokenizer_panicking_on_a_token(cli, tmp_path):
    """Whether each token's text encodes back to it: unknown (null) for the token the
    tokenizer panics on, known for the others; the command answers."""
    table = torch.randn(6, 8, generator=torch.Generator().manual_seed(3))
    save_file({"wte.weight": table}, str(tmp_path / "tiny.safetensors"))
    words = ["[unused0]", "[unused1]", "cat", "dog", RUN_OF_A, "fish"]
    spec = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
        "normalizer": None, "pre_tokenizer": {**BACKTRACKING, "invert": False},
        "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(words)},
                  "unk_token": "[unused0]"},
    }  # fmt: skip
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    run = cli("undertrained", tmp_path / "tiny.safetensors", "--tokenizer",
              tmp_path / "tokenizer.json", "-k", "4", "-f", "json")  # fmt: skip
    result = run.json()
    reachable = {t["token"]: t["reachable"] for t in result["tokens"]}
    assert reachable == {"cat": True, "dog": True, RUN_OF_A: None, "fish": True}
    assert result["unreachable"] == 0


def test_a_tokenizer_panic_through_the_api_from_many_threads(minilm, tmp_path):
    """The API raises QueryError for the text the tokenizer panics on; threads tokenizing
    at once leave file descriptor 2 where it was (it is hidden while tokenizers runs)."""
    from concurrent.futures import ThreadPoolExecutor

    import embinspect

    model = embinspect.load(minilm, tokenizer=str(panicking_on_runs_of_a(minilm, tmp_path)))
    with pytest.raises(embinspect.QueryError, match="the tokenizer failed on it"):
        model.tokens(RUN_OF_A)
    before = os.fstat(2)

    def tokenize(i: int) -> str:
        try:
            return model.tokens("queen" if i % 2 else RUN_OF_A).tokens[0].token
        except embinspect.QueryError:
            return "failed"

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(tokenize, range(16)))
    assert answers == ["failed", "queen"] * 8
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
