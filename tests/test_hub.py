"""The Hub path against a local stand-in for the Hub (``hub_server.FakeHub``).

Each test runs the real CLI, with the real huggingface_hub client, against real
checkpoint folders served in the Hub's URL layout on 127.0.0.1 (``HF_ENDPOINT``), with a
fresh ``HF_HOME`` in ``tmp_path``. The server logs which bytes of which file it sent, so
the tests assert what each command fetched, and compare every answer with the same
command on the local folder. The last section makes the server hostile or broken
(``hub_server.Fault``) and checks each case ends within its deadline, with exit 5, one
line, and nothing partial left behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import read_terminal, run_cli
from hub_server import FakeHub, Fault
from safetensors.numpy import save_file
from test_imports import imported_heavy_modules

import embinspect

pytestmark = pytest.mark.hub  # every test here talks to the loopback Hub (FakeHub)

EXIT_MODEL, EXIT_NETWORK = 3, 5
TOKEN_NAME = "embeddings.word_embeddings.weight"
# The queries most tests ask, so that each local answer is computed once.
KING = ("king", "-k", "3", "-f", "json")
PARIS = ("Paris", "#1000", "-k", "8", "-f", "json")


def header_end(path: Path) -> int:
    """Where a safetensors file's header ends: 8 bytes of length plus the JSON."""
    with open(path, "rb") as handle:
        return 8 + struct.unpack("<Q", handle.read(8))[0]


def tensor_range(path: Path, name: str) -> tuple[int, int]:
    """The absolute [start, stop) of a tensor's bytes in a safetensors file."""
    with open(path, "rb") as handle:
        length = struct.unpack("<Q", handle.read(8))[0]
        start, stop = json.loads(handle.read(length))[name]["data_offsets"]
    return 8 + length + start, 8 + length + stop


def header_ranges(path: Path) -> list[tuple[int, int]]:
    return [(0, 8), (8, header_end(path))]


def one_line_error(run, code: int, *fragments: str) -> str:
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embinspect: error: "), run.stderr
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def without(document: dict, *keys: str) -> dict:
    return {k: v for k, v in document.items() if k not in keys}


def numbers(document):
    """An answer without its provenance (which names the Hub repo and commit, or the local
    folder): the numbers a local folder and its Hub repo must agree on."""
    if isinstance(document, list):
        return [numbers(item) for item in document]
    return without(document, "provenance")


@pytest.fixture(scope="session")
def untied(tmp_path_factory) -> Path:
    """A small two-shard Llama-layout checkpoint with an untied head (synthetic weights):
    the token table in shard 1 and the head in shard 2, each beside a larger tensor, so
    that each comes as a byte range."""
    root = tmp_path_factory.mktemp("untied")
    rng = np.random.default_rng(0)
    shards = {
        "model-00001-of-00002.safetensors": {
            "model.embed_tokens.weight": rng.standard_normal((512, 32), dtype=np.float32),
            "model.layers.0.mlp.up_proj.weight": np.zeros((1024, 64), dtype=np.float32),
        },
        "model-00002-of-00002.safetensors": {
            "model.layers.0.mlp.down_proj.weight": np.zeros((1024, 64), dtype=np.float32),
            "lm_head.weight": rng.standard_normal((512, 32), dtype=np.float32),
        },
    }
    weight_map = {}
    for shard, tensors in shards.items():
        save_file(tensors, str(root / shard))
        weight_map.update(dict.fromkeys(tensors, shard))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    config = {"model_type": "llama", "hidden_size": 32, "tie_word_embeddings": False}
    (root / "config.json").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="session")
def odd_repos(tmp_path_factory) -> dict[str, Path]:
    """Repos a user may name by mistake: pickle weights only, no weights, no embeddings."""
    root = tmp_path_factory.mktemp("odd")
    pickle_only = root / "pickle-only"
    pickle_only.mkdir()
    (pickle_only / "config.json").write_text("{}")
    (pickle_only / "pytorch_model.bin").write_bytes(b"PK\x03\x04 a torch.save zip, never read")
    no_weights = root / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text("{}")
    (no_weights / "README.md").write_text("A model card and nothing else.\n")
    no_embeddings = root / "no-embeddings"
    no_embeddings.mkdir()
    save_file(
        {"encoder.proj.weight": np.ones((4, 4), dtype=np.float32)},
        str(no_embeddings / "model.safetensors"),
    )
    gguf_only = root / "gguf-only"
    gguf_only.mkdir()
    (gguf_only / "model-Q4_K_M.gguf").write_bytes(b"GGUF\x03\x00\x00\x00 never fetched")
    return {
        "pickle-only": pickle_only,
        "no-weights": no_weights,
        "no-embeddings": no_embeddings,
        "gguf-only": gguf_only,
    }


@pytest.fixture(scope="session")
def fake_hub(minilm, smollm2, gpt2, untied, odd_repos):
    hub = FakeHub().start()
    hub.add("test-org/minilm", minilm, refs=("main", "v1.0"))
    hub.add("test-org/smollm2", smollm2)
    hub.add("test-org/gpt2", gpt2)
    hub.add("test-org/untied", untied)
    hub.add("test-org/gated", minilm, gated=True, tokens=frozenset({"hf_granted_token"}))
    hub.add("test-org/private", minilm, private=True, tokens=frozenset({"hf_granted_token"}))
    for name, folder in odd_repos.items():
        hub.add(f"test-org/{name}", folder)
    yield hub
    hub.stop()


@pytest.fixture
def hub(fake_hub):
    fake_hub.reset()
    yield fake_hub
    fake_hub.reset()


@pytest.fixture
def hf_home(tmp_path) -> Path:
    return tmp_path / "hf"


@pytest.fixture
def env(hub, hf_home) -> dict[str, str]:
    """The environment of every run: this test's HF_HOME, the fake Hub, no token, online."""
    return {
        "HF_HOME": str(hf_home),
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": "",
        "HF_HUB_OFFLINE": "",
        "TRANSFORMERS_OFFLINE": "",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


@pytest.fixture(scope="session")
def local_answer():
    """The JSON answer of a command on a local folder, computed once per session."""
    answers: dict[tuple, object] = {}

    def answer(command: str, folder: Path, *args: str):
        key = (command, str(folder), *args)
        if key not in answers:
            answers[key] = numbers(run_cli(command, folder, *args).json())
        return answers[key]

    return answer


def offline(env: dict[str, str]) -> dict[str, str]:
    return {**env, "HF_HUB_OFFLINE": "1"}


def assets(hf_home: Path) -> Path:
    return hf_home / "assets" / "embinspect"


def leftovers(root: Path) -> list[Path]:
    """Partial downloads left behind (none ever should be)."""
    return [p for p in root.rglob("*") if p.name.endswith(".incomplete")]


# --- info: headers and JSON only --------------------------------------------------------


@pytest.mark.parametrize("fixture", ["minilm", "smollm2"])
def test_info_reads_headers_and_json_only(cli, request, hub, env, hf_home, fixture):
    folder = request.getfixturevalue(fixture)
    run = cli("info", f"test-org/{fixture}", "-f", "json", env=env)
    remote = run.json()
    assert run.stderr == ""  # no progress bars, no warnings: stderr is not a terminal
    local = cli("info", folder, "-f", "json").json()
    assert without(remote, "model", "fetch", "cached_ranges") == without(local, "model")
    assert remote["model"] == f"test-org/{fixture}"
    weights = sorted(p.name for p in folder.glob("*.safetensors"))
    # Every header and nothing else of every weight file: two range requests each.
    for name in weights:
        assert hub.bytes_sent(name) == header_ranges(folder / name), name
    assert hub.files_sent() - set(weights) <= {
        "config.json",
        "tokenizer.json",
        "model.safetensors.index.json",
    }
    assert not list((hf_home / "hub").rglob("*.safetensors"))


def test_info_says_what_each_command_would_fetch(cli, hub, env, minilm, smollm2):
    plan = cli("info", "test-org/minilm", "-f", "json", env=env).json()["fetch"]
    token = tensor_range(minilm / "model.safetensors", TOKEN_NAME)
    assert plan[0]["commands"] == "tokens, neighbors, compare, analogy"
    assert plan[0]["bytes"] == token[1] - token[0] == 46_881_792
    assert plan[0]["parts"] == [
        {"tensor": TOKEN_NAME, "file": "model.safetensors", "how": "range", "bytes": 46_881_792}
    ]
    assert plan[1]["commands"] == "tokens --positions"
    assert [p["tensor"] for p in plan[1]["parts"]] == [
        TOKEN_NAME,
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
    ]
    assert plan[1]["bytes"] == 46_881_792 + 786_432 + 3_072
    # SmolLM2's first shard is its table and nothing else: the whole shard comes.
    shard = smollm2 / "model-00001-of-00004.safetensors"
    plan = cli("info", "test-org/smollm2", "-f", "json", env=env).json()["fetch"]
    assert [(p["how"], p["bytes"]) for p in plan[0]["parts"]] == [("file", shard.stat().st_size)]
    table = cli("info", "test-org/smollm2", "-f", "table", env=env).stdout
    assert f"tokens, neighbors, compare, analogy: {shard.stat().st_size:,} bytes" in table
    # Once fetched, nothing more.
    cli("neighbors", "test-org/minilm", "#1", "-k", "1", env=env)
    plan = cli("info", "test-org/minilm", "-f", "json", env=env).json()["fetch"]
    assert (plan[0]["bytes"], plan[0]["parts"][0]["how"]) == (0, "cached")


def test_info_imports_nothing_heavy_for_a_hub_repo(hub, env):
    assert imported_heavy_modules("info", "test-org/smollm2", "-f", "json", env=env) == []


# --- the other commands: only the tensor they read ----------------------------------------


def test_neighbors_fetch_only_the_token_table_range_then_answer_offline(
    cli, hub, env, hf_home, minilm, local_answer
):
    args = ("neighbors", *KING)
    local = local_answer(args[0], minilm, *args[1:])
    remote = cli(args[0], "test-org/minilm", *args[1:], env=env)
    assert numbers(remote.json()) == local
    assert remote.stderr == ""
    file = minilm / "model.safetensors"
    assert hub.bytes_sent("model.safetensors") == [
        *header_ranges(file),
        tensor_range(file, TOKEN_NAME),
    ]
    assert hub.files_sent() == {"model.safetensors", "config.json", "tokenizer.json"}
    assert not list((hf_home / "hub").rglob("*.safetensors"))  # the range only, not the file
    hub.reset()
    again = cli(args[0], "test-org/minilm", *args[1:], env=offline(env))
    assert numbers(again.json()) == local
    assert hub.requests == []
    # Online again: one request (is main still that commit?), no bytes.
    assert numbers(cli(args[0], "test-org/minilm", *args[1:], env=env).json()) == local
    assert [r.path for r in hub.requests] == ["/api/models/test-org/minilm"]


def test_sharded_repo_fetches_only_the_shard_of_the_table(
    cli, hub, env, hf_home, smollm2, local_answer
):
    args = ("neighbors", *PARIS)
    local = local_answer(args[0], smollm2, *args[1:])
    assert numbers(cli(args[0], "test-org/smollm2", *args[1:], env=env).json()) == local
    shard = "model-00001-of-00004.safetensors"
    assert hub.files_sent() == {
        shard,
        "model.safetensors.index.json",
        "config.json",
        "tokenizer.json",
    }
    size = (smollm2 / shard).stat().st_size
    assert hub.bytes_sent(shard) == [*header_ranges(smollm2 / shard), (0, size)]
    cached = list((hf_home / "hub").rglob("*.safetensors"))
    assert [p.name for p in cached] == [shard]  # in huggingface_hub's own cache
    hub.reset()
    assert numbers(cli(args[0], "test-org/smollm2", *args[1:], env=offline(env)).json()) == local
    assert hub.requests == []


def test_tokens_fetch_the_position_table_only_with_positions(cli, hub, env, minilm):
    file = minilm / "model.safetensors"
    plain = cli("tokens", "test-org/minilm", "The cat sat", "-f", "json", env=env).json()
    local = cli("tokens", minilm, "The cat sat", "-f", "json").json()
    assert without(plain, "model", "provenance") == without(local, "model", "provenance")
    assert hub.bytes_sent("model.safetensors") == [
        *header_ranges(file),
        tensor_range(file, TOKEN_NAME),
    ]
    hub.reset()
    args = ("The cat sat", "--positions", "--vectors", "-f", "json")
    positions = cli("tokens", "test-org/minilm", *args, env=env).json()
    local = cli("tokens", minilm, *args).json()
    assert without(positions, "model", "provenance") == without(local, "model", "provenance")
    assert hub.bytes_sent("model.safetensors") == [
        tensor_range(file, "embeddings.position_embeddings.weight"),
        tensor_range(file, "embeddings.token_type_embeddings.weight"),
    ]


def test_output_head_is_fetched_only_with_table_output(cli, hub, env, untied):
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    for table, shard, name in [
        ("input", first, "model.embed_tokens.weight"),
        ("output", second, "lm_head.weight"),
    ]:
        hub.reset()
        args = ("#5", "#17", "-k", "4", "--table", table, "-f", "json")
        local = numbers(cli("neighbors", untied, *args).json())
        assert numbers(cli("neighbors", "test-org/untied", *args, env=env).json()) == local
        sent = hub.bytes_sent(shard)
        assert sent[-1] == tensor_range(untied / shard, name)
        other = second if shard == first else first
        assert all(stop <= header_end(untied / other) for _, stop in hub.bytes_sent(other))


def test_full_download_fetches_the_whole_file(cli, hub, env, hf_home, minilm):
    args = ("compare", "cat", "dog", "car", "-f", "json")
    local = numbers(cli(args[0], minilm, *args[1:]).json())
    remote = cli(args[0], "test-org/minilm", *args[1:], "--full-download", env=env)
    assert numbers(remote.json()) == local
    size = (minilm / "model.safetensors").stat().st_size
    assert hub.bytes_sent("model.safetensors")[-1] == (0, size)
    assert [p.name for p in (hf_home / "hub").rglob("*.safetensors")] == ["model.safetensors"]
    assert not list(assets(hf_home).rglob("tensors/*/*"))


def test_legacy_tokenizer_files_come_together(cli, hub, env, gpt2):
    """GPT-2 has vocab.json + merges.txt and no tokenizer.json: transformers needs both."""
    args = ("tokens", "Hello world", "-f", "json")
    local = cli(args[0], gpt2, *args[1:]).json()
    remote = cli(args[0], "test-org/gpt2", *args[1:], env=env).json()
    assert without(remote, "model", "provenance") == without(local, "model", "provenance")
    assert {"vocab.json", "merges.txt"} <= hub.files_sent()


# --- options and environment --------------------------------------------------------------


def test_revision_and_cache_dir(cli, hub, env, hf_home, tmp_path, minilm, local_answer):
    elsewhere = tmp_path / "elsewhere"
    args = ("neighbors", "test-org/minilm", *KING)
    tagged = numbers(cli(*args, "--revision", "v1.0", "--cache-dir", elsewhere, env=env).json())
    assert tagged == local_answer("neighbors", minilm, *KING)
    assert (elsewhere / "models--test-org--minilm" / "refs" / "v1.0").is_file()
    assert not (hf_home / "hub" / "models--test-org--minilm").exists()
    info = cli("info", "test-org/minilm", "--revision", "v1.0", "-f", "json", env=env).json()
    assert info["model"] == "test-org/minilm@v1.0"
    # --offline, with the same --cache-dir, answers from there.
    hub.reset()
    again = cli(*args, "--revision", "v1.0", "--cache-dir", elsewhere, "--offline", env=env)
    assert numbers(again.json()) == tagged
    assert hub.requests == []


@pytest.fixture(scope="session")
def tokenizer_repo(fake_hub, minilm, gpt2) -> dict[str, str]:
    """A repo whose main branch holds MiniLM's WordPiece tokenizer and whose tag v2 holds
    GPT-2's byte-level BPE (vocab.json + merges.txt): ref -> commit."""
    return {
        "main": fake_hub.add("test-org/tokenizers", minilm),
        "v2": fake_hub.add("test-org/tokenizers", gpt2, refs=("v2",)),
    }


def tokens_of(run) -> list[int]:
    return [token["token_id"] for token in run.json()["tokens"]]


def test_tokenizer_revision_and_cache_dir(cli, hub, env, hf_home, tmp_path, minilm, tokenizer_repo):
    """--tokenizer REPO is fetched at --tokenizer-revision, into --cache-dir; --offline then
    answers from there without a request."""
    elsewhere = tmp_path / "elsewhere"
    args = ("tokens", minilm, "the king", "-f", "json", "--tokenizer", "test-org/tokenizers")
    main = cli(*args, "--cache-dir", elsewhere, env=env)
    assert tokens_of(main) == [1996, 2332]  # MiniLM's WordPiece
    tagged = cli(*args, "--tokenizer-revision", "v2", "--cache-dir", elsewhere, env=env)
    assert tokens_of(tagged) == [1169, 5822]  # GPT-2's "the", "Ġking"
    assert [token["token"] for token in tagged.json()["tokens"]] == ["the", "Ġking"]
    repo = elsewhere / "models--test-org--tokenizers"
    assert (repo / "refs" / "v2").read_text() == tokenizer_repo["v2"]
    assert (repo / "snapshots" / tokenizer_repo["v2"] / "merges.txt").is_file()
    assert (repo / "snapshots" / tokenizer_repo["main"] / "tokenizer.json").is_file()
    assert not (hf_home / "hub" / "models--test-org--tokenizers").exists()
    resolved = {r.path for r in hub.requests if "/resolve/" in r.path}
    # GPT-2's files came at v2's commit (and MiniLM's at main's).
    assert f"/test-org/tokenizers/resolve/{tokenizer_repo['v2']}/vocab.json" in resolved
    assert f"/test-org/tokenizers/resolve/{tokenizer_repo['main']}/tokenizer.json" in resolved
    # Offline, from the same cache; a commit names the same files.
    hub.reset()
    for revision in ("v2", tokenizer_repo["v2"]):
        again = cli(*args, "--tokenizer-revision", revision, "--cache-dir", elsewhere,
                    "--offline", env=env)  # fmt: skip
        assert tokens_of(again) == [1169, 5822], revision
    assert hub.requests == []


def test_tokenizer_revision_through_the_api(hub, env, tmp_path, minilm, tokenizer_repo):
    from conftest import _environment, _hub_constants

    import embinspect

    with _environment({**os.environ, **env}), _hub_constants():
        model = embinspect.load(
            str(minilm),
            tokenizer="test-org/tokenizers",
            tokenizer_revision="v2",
            cache_dir=tmp_path / "cache",
        )
        assert [t.token_id for t in model.tokens("the king").tokens] == [1169, 5822]
    snapshot = tmp_path / "cache" / "models--test-org--tokenizers" / "snapshots"
    assert (snapshot / tokenizer_repo["v2"] / "vocab.json").is_file()


def test_tokenizer_revision_of_a_missing_revision(cli, hub, env, minilm, tokenizer_repo):
    run = cli("tokens", minilm, "king", "--tokenizer", "test-org/tokenizers",
              "--tokenizer-revision", "v9", env=env)  # fmt: skip
    one_line_error(run, EXIT_MODEL, "test-org/tokenizers", "cannot build a tokenizer")


@pytest.mark.parametrize(
    ("command", "tokenizer", "says"),
    [
        ("tokens", None, "--tokenizer-revision goes with --tokenizer REPO_ID"),
        ("neighbors", None, "--tokenizer-revision goes with --tokenizer REPO_ID"),
        ("tokens", "file", "--tokenizer-revision v2 goes with a Hub repo id; "),
        ("neighbors", "folder", "--tokenizer-revision v2 goes with a Hub repo id; "),
    ],
    ids=["no-tokenizer", "no-tokenizer-neighbors", "local-file", "local-folder"],
)
def test_tokenizer_revision_needs_a_repo_id(cli, minilm, command, tokenizer, says):
    args = [command, minilm, "king", "--tokenizer-revision", "v2"]
    if tokenizer is not None:
        args += ["--tokenizer", minilm / "tokenizer.json" if tokenizer == "file" else minilm]
    line = one_line_error(cli(*args), 2, says)
    if tokenizer is not None:
        assert line.endswith(f"{minilm / 'tokenizer.json' if tokenizer == 'file' else minilm} "
                             f"is a local {tokenizer}")  # fmt: skip


def test_tokenizer_revision_needs_a_repo_id_through_the_api(minilm):
    import embinspect
    from embinspect.errors import UsageError

    with pytest.raises(UsageError, match=r"^tokenizer_revision='v2' goes with tokenizer=REPO_ID$"):
        embinspect.load(str(minilm), tokenizer_revision="v2")
    model = embinspect.load(str(minilm), tokenizer=str(minilm), tokenizer_revision="v2")
    with pytest.raises(UsageError, match=r"^tokenizer_revision='v2' goes with a Hub repo id; "):
        model.neighbors("king")


def test_provenance_names_the_repo_the_revision_and_its_commit(cli, hub, env):
    commit = hub.repos["test-org/minilm"].refs["v1.0"]
    expected = {
        "source": "test-org/minilm",
        "resolved": "test-org/minilm",
        "revision": "v1.0",
        "commit": commit,
        "tensor": "embeddings.word_embeddings.weight",
        "dtype": "F32",
        "embinspect_version": embinspect.__version__,
    }
    args = ("test-org/minilm", "--revision", "v1.0", "-f", "json")
    (answer,) = cli("neighbors", *args, "king", "-k", "1", env=env).json()
    assert answer["provenance"] == expected
    assert cli("tokens", *args, "king", env=env).json()["provenance"] == expected
    main = cli("compare", "test-org/minilm", "cat", "dog", "-f", "json", env=env).json()
    assert main["provenance"] == {**expected, "revision": None}


def test_offline_without_the_files_names_what_is_missing(cli, hub, env):
    run = cli("info", "test-org/minilm", env=offline(env))
    one_line_error(run, EXIT_MODEL, "test-org/minilm", "not in the local Hugging Face cache")
    assert hub.requests == []
    # info fetched the headers and JSON; the table itself was never fetched.
    cli("info", "test-org/minilm", env=env)
    hub.reset()
    assert cli("info", "test-org/minilm", "--offline", "-f", "json", env=env).returncode == 0
    run = cli("neighbors", "test-org/minilm", "king", "--offline", env=env)
    one_line_error(run, EXIT_MODEL, TOKEN_NAME, "model.safetensors", "not in the local")
    assert hub.requests == []


def test_progress_bar_only_on_a_terminal(hub, env, tmp_path):
    """stderr a terminal: a progress bar while the table downloads (and none in a pipe, as
    every other test checks)."""
    leader, follower = pty.openpty()
    # 24 rows x 120 columns: a new terminal is 0 x 0, and tqdm draws nothing in no width.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-m", "embinspect", "neighbors", "test-org/minilm", "king", "-f", "json"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    shown = read_terminal(leader)
    child.stdout.read()
    assert child.wait(timeout=300) == 0
    assert TOKEN_NAME.encode() in shown and b"100%" in shown


# --- errors -------------------------------------------------------------------------------


def test_missing_repo_and_revision(cli, hub, env):
    one_line_error(cli("info", "test-org/nothing", env=env), EXIT_MODEL, "no such Hub repo")
    run = cli("info", "test-org/minilm", "--revision", "no-such-branch", env=env)
    one_line_error(run, EXIT_MODEL, "test-org/minilm@no-such-branch", "no such revision")


def test_private_repo_needs_a_token(cli, hub, env, minilm):
    one_line_error(cli("info", "test-org/private", env=env), EXIT_MODEL, "private", "HF_TOKEN")
    granted = {**env, "HF_TOKEN": "hf_granted_token"}
    assert cli("info", "test-org/private", "-f", "json", env=granted).returncode == 0


def test_gated_repo_says_how_to_get_access_and_never_prints_the_token(
    cli, hub, env, minilm, local_answer
):
    run = cli("info", "test-org/gated", env=env)  # no token: 401
    line = one_line_error(run, EXIT_MODEL, "gated", f"{hub.url}/test-org/gated", "HF_TOKEN")
    assert any(r.status == 401 for r in hub.requests)
    hub.reset()
    refused = {**env, "HF_TOKEN": "hf_not_granted_secret"}
    run = cli("info", "test-org/gated", env=refused)  # a token without access: 403
    line = one_line_error(run, EXIT_MODEL, "gated", "no access yet")
    assert "hf_not_granted_secret" not in run.stderr + run.stdout
    assert any(r.status == 403 for r in hub.requests)
    hub.reset()
    granted = {**env, "HF_TOKEN": "hf_granted_token"}
    remote = cli("neighbors", "test-org/gated", *KING, env=granted)
    assert numbers(remote.json()) == local_answer("neighbors", minilm, *KING)
    # The token goes to the Hub, never to the CDN the weights are redirected to.
    assert all(r.authorized == (r.host == "127.0.0.1") for r in hub.requests), hub.requests
    del line


@pytest.mark.parametrize(
    ("repo", "fragments"),
    [
        ("pickle-only", ("test-org/pickle-only/pytorch_model.bin", "never unpickles")),
        ("no-weights", ("no .safetensors weights",)),
        ("no-embeddings", ("no token embedding tensor",)),
        ("gguf-only", ("holds GGUF files", "hf download test-org/gguf-only model-Q4_K_M.gguf")),
    ],
)
def test_repos_without_usable_weights(cli, hub, env, repo, fragments):
    one_line_error(cli("info", f"test-org/{repo}", env=env), EXIT_MODEL, *fragments)
    fetched = {r.file for r in hub.requests}
    assert not fetched & {"pytorch_model.bin", "model-Q4_K_M.gguf"}  # never even fetched


def test_network_down(cli, hub, env):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = {**env, "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
    run = cli("info", "test-org/minilm", env=down)
    one_line_error(run, EXIT_NETWORK, "cannot reach the Hub", f"127.0.0.1:{port}")
    # With what it needs in the cache, it answers anyway (as huggingface_hub does).
    answer = cli("info", "test-org/minilm", "-f", "json", env=env).json()
    assert cli("info", "test-org/minilm", "-f", "json", env=down).json() == answer


@pytest.mark.slow
def test_a_range_cut_short_is_never_used(cli, hub, env, hf_home, minilm, local_answer):
    start, stop = tensor_range(minilm / "model.safetensors", TOKEN_NAME)
    hub.break_at["model.safetensors"] = start + 5_000_000
    args = ("neighbors", *KING)
    run = cli(args[0], "test-org/minilm", *args[1:], env=env)
    one_line_error(run, EXIT_NETWORK, "broke off", "nothing partial was kept")
    assert not list(assets(hf_home).rglob("tensors/*/*")) and not leftovers(hf_home)
    # Each try resumed where the last stopped, and none asked for bytes past the table.
    tries = [r.range for r in hub.requests if r.host == "localhost" and r.sent[0] >= start]
    assert tries == [f"bytes={start}-{stop - 1}"] + [f"bytes={start + 5_000_000}-{stop - 1}"] * 3
    hub.break_at.clear()
    local = local_answer(args[0], minilm, *args[1:])
    assert numbers(cli(args[0], "test-org/minilm", *args[1:], env=env).json()) == local


@pytest.mark.slow
def test_a_shard_cut_short_is_never_used(cli, hub, env, hf_home, smollm2, local_answer):
    shard = "model-00001-of-00004.safetensors"
    hub.break_at[shard] = 10_000_000
    args = ("neighbors", *PARIS)
    run = cli(args[0], "test-org/smollm2", *args[1:], env=env)
    one_line_error(run, EXIT_NETWORK, "broke off", shard)
    assert not list((hf_home / "hub").rglob("*.safetensors")) and not leftovers(hf_home)
    # Weight files are stored as blobs named by their sha256 (64 hex digits): none is.
    assert not [p for p in (hf_home / "hub").rglob("blobs/*") if len(p.name) == 64]
    hub.break_at.clear()
    local = local_answer(args[0], smollm2, *args[1:])
    assert numbers(cli(args[0], "test-org/smollm2", *args[1:], env=env).json()) == local


def test_a_damaged_range_file_is_fetched_again(cli, hub, env, hf_home, minilm, local_answer):
    args = ("neighbors", *KING)
    local = local_answer(args[0], minilm, *args[1:])
    assert numbers(cli(args[0], "test-org/minilm", *args[1:], env=env).json()) == local
    (range_file,) = assets(hf_home).rglob("tensors/*/*")
    with open(range_file, "r+b") as handle:  # as if the disk filled up mid-write
        handle.truncate(range_file.stat().st_size - 4096)
    run = cli(args[0], "test-org/minilm", *args[1:], env=offline(env))
    one_line_error(run, EXIT_MODEL, TOKEN_NAME, "not in the local")
    hub.reset()
    assert numbers(cli(args[0], "test-org/minilm", *args[1:], env=env).json()) == local
    assert hub.bytes_sent("model.safetensors") == [
        tensor_range(minilm / "model.safetensors", TOKEN_NAME)
    ]


# --- a hostile or broken server -------------------------------------------------------------
# Each case ends with exit 5 and one line, within EMBINSPECT_HTTP_TIMEOUT (T) plus slack.
# T is small here, and EMBINSPECT_HTTP_BACKOFF (test-only: the first wait between retries)
# smaller, so the whole section stays fast.

T = 1.0
SLACK = 4.0  # seconds: a process on a busy 2-core machine


def bounded_env(env: dict[str, str], seconds: float = T) -> dict[str, str]:
    return {**env, "EMBINSPECT_HTTP_TIMEOUT": f"{seconds:g}", "EMBINSPECT_HTTP_BACKOFF": "0.05"}


def timed(cli, *args, env):
    started = time.monotonic()
    run = cli(*args, env=env)
    return run, time.monotonic() - started


def table_start(minilm: Path) -> int:
    return tensor_range(minilm / "model.safetensors", TOKEN_NAME)[0]


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "1e999"])
def test_http_timeout_must_be_a_positive_number(cli, hub, env, value):
    run = cli("info", "test-org/minilm", env={**env, "EMBINSPECT_HTTP_TIMEOUT": value})
    one_line_error(run, 2, "EMBINSPECT_HTTP_TIMEOUT", "greater than 0")
    assert hub.requests == []


def test_range_ignored_ends_naming_full_download_without_reading_the_file(cli, hub, env, minilm):
    hub.faults.append(Fault("ignore-range", "model.safetensors"))
    run, took = timed(cli, "info", "test-org/minilm", env=bounded_env(env))
    one_line_error(run, EXIT_NETWORK, "ignored the byte range", "--full-download")
    assert took < T + SLACK
    # The whole file was offered; the client closed it unread after the status line.
    hub.settle()
    (answer,) = [r for r in hub.requests if r.fault == "ignore-range"]
    assert answer.range == "bytes=0-7" and answer.status == 200
    size = (minilm / "model.safetensors").stat().st_size
    assert answer.sent[1] < 16 << 20 < size  # what socket buffers hold, not the 91 MB file


def test_range_ignored_with_full_download_answers(cli, hub, env, hf_home, minilm, local_answer):
    hub.faults.append(Fault("ignore-range", "model.safetensors"))
    args = ("neighbors", *KING)
    run = cli(args[0], "test-org/minilm", *args[1:], "--full-download", env=bounded_env(env, 10))
    assert numbers(run.json()) == local_answer(args[0], minilm, *args[1:])
    # One whole-file request, no range ever: the header came from the file itself.
    assert [r.range for r in hub.requests if r.file == "model.safetensors"] == [None]
    assert [p.name for p in (hf_home / "hub").rglob("*.safetensors")] == ["model.safetensors"]


def where_args(minilm: Path, where: str) -> tuple[int, tuple[str, ...]]:
    """The first byte a fault answers from, and the arguments: the header's range, the
    table's range, or the whole file (``--full-download``)."""
    if where == "table":
        return table_start(minilm), ()
    return 0, ("--full-download",) if where == "whole-file" else ()


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        pytest.param("header", "not answered within 1 s", id="header-deadline"),
        pytest.param("table", "bytes a second", id="table-trickle"),
        pytest.param("whole-file", "bytes a second", id="whole-file-trickle"),
    ],
)
@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
def test_trickle_ends_within_the_deadline(cli, hub, env, hf_home, minilm, where, expected):
    start, extra = where_args(minilm, where)
    hub.faults.append(Fault("trickle", "model.safetensors", from_byte=start, interval=0.3))
    args = ("neighbors", "test-org/minilm", "king", *extra)
    run, took = timed(cli, *args, env=bounded_env(env))
    one_line_error(run, EXIT_NETWORK, "too slow", expected, "EMBINSPECT_HTTP_TIMEOUT=1")
    # A window of T to notice, a byte's interval, and the rest of the command.
    assert took < 2 * T + SLACK
    assert not leftovers(hf_home)


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
@pytest.mark.parametrize("where", ["table", "whole-file"])
def test_stall_mid_body_ends_after_the_timeout(cli, hub, env, hf_home, minilm, where):
    start, extra = where_args(minilm, where)
    hub.faults.append(Fault("stall", "model.safetensors", from_byte=start, after=100_000))
    args = ("neighbors", "test-org/minilm", "king", *extra)
    run, took = timed(cli, *args, env=bounded_env(env))
    one_line_error(run, EXIT_NETWORK, "too slow", "no byte for 1 s", "nothing partial")
    assert took < T + SLACK
    assert not leftovers(hf_home) and not list(assets(hf_home).rglob("tensors/*/*"))


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
@pytest.mark.parametrize("where", ["api", "config.json", "model.safetensors"])
def test_silent_server_ends_after_the_timeout(cli, hub, env, where):
    """No answer at all: huggingface_hub's own retries (half a minute for a file's HEAD)
    are not sent on top."""
    hub.faults.append(Fault("silent", where))
    run, took = timed(cli, "info", "test-org/minilm", env=bounded_env(env))
    one_line_error(run, EXIT_NETWORK, "too slow", "EMBINSPECT_HTTP_TIMEOUT=1")
    assert took < 2 * T + SLACK


NOT_JSON = "sent something that is not its JSON for revision main"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(b"{not json", (NOT_JSON, "JSONDecodeError"), id="not-json"),
        pytest.param(b"[1, 2]", (NOT_JSON, "TypeError"), id="a-list"),
        pytest.param(b'{"sha": "' + b"a" * 40 + b'"}', (NOT_JSON, "KeyError"), id="no-id"),
        pytest.param(
            b'{"id": "x", "sha": "../../etc/passwd", "siblings": []}',
            ("named a commit that is not one", "../../etc/passwd"),
            id="bad-commit",
        ),
        pytest.param(
            b'{"id": "x", "sha": "' + b"a" * 40 + b'", "siblings": 5}',
            (NOT_JSON, "TypeError"),
            id="bad-siblings",
        ),
        pytest.param(b"\xff\xfe" + b"x" * 5000, (NOT_JSON,), id="binary"),
        pytest.param(b'{"error": "' + b"x" * 100_000 + b'"}', (NOT_JSON,), id="long"),
    ],
)
def test_bad_json_from_the_model_api(cli, hub, env, hf_home, payload, expected):
    hub.faults.append(Fault("payload", "api", payload=payload))
    run, took = timed(cli, "info", "test-org/minilm", env=bounded_env(env))
    line = one_line_error(run, EXIT_NETWORK, "test-org/minilm", *expected)
    assert len(line) < 500  # the server's text is quoted 200 characters at most
    assert took < T + SLACK
    assert not (hf_home / "assets").exists()  # nothing kept under a name the server chose


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n{}", id="bad-length"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-\x00: y\r\n\r\n", id="bad-header-name"),
        pytest.param(b"SMTP ready\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 302 Found\r\nLocation: ftp://x/\r\n\r\n", id="odd-redirect"),
    ],
)
def test_invalid_headers_from_the_model_api(cli, hub, env, answer):
    hub.faults.append(Fault("garbage", "api", payload=answer))
    run, took = timed(cli, "info", "test-org/minilm", env=bounded_env(env))
    one_line_error(run, EXIT_NETWORK, "test-org/minilm")
    assert took < T + SLACK


def test_over_long_answer_from_the_model_api(cli, hub, env):
    hub.faults.append(Fault("too-long", "api"))
    run = cli("info", "test-org/minilm", env=bounded_env(env))
    one_line_error(run, EXIT_NETWORK, "too long an answer", "104,857,600 bytes")


@pytest.mark.parametrize("where", ["api", "config.json"])
def test_redirect_loop(cli, hub, env, where):
    hub.faults.append(Fault("redirect-loop", where))
    run, took = timed(cli, "info", "test-org/minilm", env=bounded_env(env))
    one_line_error(run, EXIT_NETWORK, "redirected", "in a loop")
    assert took < T + SLACK


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
def test_429_then_success_honours_retry_after(cli, hub, env, minilm):
    hub.faults.append(Fault("status", "api", status=429, retry_after="1", times=1))
    run, took = timed(cli, "info", "test-org/minilm", "-f", "json", env=bounded_env(env, 2))
    assert without(run.json(), "model", "fetch", "cached_ranges") == without(
        cli("info", minilm, "-f", "json").json(), "model"
    )
    first = [r for r in hub.requests if r.path.startswith("/api/")][:2]
    assert [(r.status, r.fault) for r in first] == [(429, "status"), (200, None)]
    assert first[0].path == first[1].path
    assert took >= 1.0  # it waited as asked


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
def test_retry_after_is_capped_at_the_timeout(cli, hub, env):
    hub.faults.append(Fault("status", "api", status=503, retry_after="86400", times=1))
    run, took = timed(cli, "info", "test-org/minilm", "-f", "json", env=bounded_env(env))
    assert run.returncode == 0, run.stderr
    assert took < T + SLACK


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
def test_503_three_times_then_success(cli, hub, env, minilm, local_answer):
    hub.faults.append(Fault("status", "model.safetensors", status=503, times=3))
    args = ("neighbors", *KING)
    run = cli(args[0], "test-org/minilm", *args[1:], env=bounded_env(env))
    assert numbers(run.json()) == local_answer(args[0], minilm, *args[1:])
    statuses = [r.status for r in hub.requests if r.path.endswith("/model.safetensors")]
    assert statuses[:3] == [503, 503, 503] and 503 not in statuses[3:]


@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
def test_500_forever_ends_after_bounded_attempts(cli, hub, env):
    hub.faults.append(Fault("status", "model.safetensors", status=500))
    run, took = timed(cli, "info", "test-org/minilm", env=bounded_env(env))
    one_line_error(run, EXIT_NETWORK, "answered 500", "5 times", "try again later")
    hub.settle()
    assert len([r for r in hub.requests if r.fault == "status"]) == 5
    assert took < T + SLACK


def test_a_4xx_answer_is_refused_without_retrying(cli, hub, env):
    hub.faults.append(Fault("status", "api", status=400))
    run = cli("info", "test-org/minilm", env=bounded_env(env))
    one_line_error(run, EXIT_MODEL, "the Hub refused revision main (400)")
    hub.settle()
    assert [r.status for r in hub.requests] == [400]


def test_compressed_range_is_refused(cli, hub, env, hf_home):
    hub.faults.append(Fault("gzip", "model.safetensors"))
    run = cli("info", "test-org/minilm", env=bounded_env(env))
    one_line_error(run, EXIT_NETWORK, "compressed", "gzip")
    ranged = [r for r in hub.requests if r.range is not None]
    assert ranged and all(r.accept_encoding == "identity" for r in ranged)
    assert not leftovers(hf_home)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        pytest.param("header", "more bytes than asked for", id="header"),
        pytest.param("table", "more bytes than asked for", id="table"),
        pytest.param("whole-file", "more than 90,868,376 bytes", id="whole-file"),
    ],
)
def test_over_long_body_is_refused(cli, hub, env, hf_home, minilm, where, expected):
    start, extra = where_args(minilm, where)
    hub.faults.append(Fault("overlong", "model.safetensors", from_byte=start, extra=1 << 20))
    run = cli("neighbors", "test-org/minilm", "king", *extra, env=bounded_env(env, 10))
    one_line_error(run, EXIT_NETWORK, expected)
    assert not leftovers(hf_home) and not list(assets(hf_home).rglob("tensors/*/*"))
    assert not list((hf_home / "hub").rglob("*.safetensors"))


def test_dns_failure_and_tls_to_a_plain_server(cli, hub, env):
    tls = {**bounded_env(env), "HF_ENDPOINT": hub.url.replace("http://", "https://")}
    one_line_error(cli("info", "test-org/minilm", env=tls), EXIT_NETWORK, "cannot reach the Hub")
    dns = {**bounded_env(env), "HF_ENDPOINT": "http://no-such-host.invalid"}
    one_line_error(cli("info", "test-org/minilm", env=dns), EXIT_NETWORK, "cannot reach the Hub")


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("range", id="range"),
        pytest.param("file", id="full-download"),
    ],
)
@pytest.mark.parametrize(
    ("signum", "code"),
    [
        pytest.param(signal.SIGINT, 130, id="SIGINT"),
        pytest.param(signal.SIGTERM, 143, id="SIGTERM"),
    ],
)
@pytest.mark.slow  # a process, a signal or a slow server: `make test` runs it
def test_interrupted_download_leaves_nothing_behind(
    hub, env, hf_home, minilm, local_answer, how, signum, code
):
    start = table_start(minilm) if how == "range" else 0
    hub.faults.append(Fault("pause", "model.safetensors", from_byte=start, after=5_000_000))
    args = ["neighbors", "test-org/minilm", *KING]
    if how == "file":
        args.append("--full-download")
    child = subprocess.Popen(
        [sys.executable, "-m", "embinspect", *args],
        env={**os.environ, **bounded_env(env, 30)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert hub.paused.wait(60), "the download never reached the pause"
        deadline = time.monotonic() + 10
        while not leftovers(hf_home) and time.monotonic() < deadline:
            time.sleep(0.05)  # the bytes before the pause reach the partial file
        assert leftovers(hf_home), "no partial file to clean up: the test proves nothing"
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=30)
    finally:
        child.kill()
        hub.release()
    if signum == signal.SIGTERM and child.returncode == -signal.SIGTERM:
        pytest.xfail("needs env branch: no SIGTERM handler in main yet")
    assert child.returncode == code, stderr
    assert "Traceback" not in stderr
    assert not leftovers(hf_home)
    # A second run works without any cleanup.
    hub.reset()
    again = run_cli(*args, env=env)
    assert numbers(again.json()) == local_answer("neighbors", minilm, *KING)
