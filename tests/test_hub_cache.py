"""A Hub repo id resolves through huggingface_hub's cache: offline, with HF_HOME honoured.

The Hub cannot be reached from the test machines, so the cache is laid out here the way
huggingface_hub writes it (blobs, snapshots/<commit>, refs/<branch>) from the real MiniLM
files, and every run sets HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


def cache_repo(hf_home: Path, repo_id: str, files: dict[str, Path], commit: str, ref: str) -> None:
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        shutil.copyfile(source, snapshot / name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)


def test_repo_id_from_the_local_cache_offline(cli, minilm, tmp_path):
    files = {n: minilm / n for n in ("config.json", "model.safetensors", "tokenizer.json")}
    cache_repo(tmp_path, "test-org/minilm", files, COMMIT, "main")
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    info = cli("info", "test-org/minilm", "--format", "json", env=env).json()
    assert info["model"] == "test-org/minilm"
    assert info["tensors"][0]["name"] == "embeddings.word_embeddings.weight"
    assert info["vocab_size"] == 30522
    tokens = cli("tokens", "test-org/minilm", "king", "--format", "json", env=env).json()
    assert [t["token_id"] for t in tokens["tokens"]] == [2332]


def test_revision_picks_a_branch(cli, minilm, gpt2, tmp_path):
    cache_repo(
        tmp_path,
        "test-org/model",
        {n: minilm / n for n in ("config.json", "model.safetensors")},
        COMMIT,
        "main",
    )
    shards = {p.name: p for p in gpt2.iterdir() if p.suffix in {".json", ".safetensors"}}
    cache_repo(tmp_path, "test-org/model", shards, OTHER_COMMIT, "gpt2-branch")
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    main = cli("info", "test-org/model", "-f", "json", env=env).json()
    branch = cli("info", "test-org/model", "--revision", "gpt2-branch", "-f", "json", env=env)
    assert main["tensors"][0]["name"] == "embeddings.word_embeddings.weight"
    assert branch.json()["tensors"][0]["name"] == "transformer.wte.weight"
    assert branch.json()["model"] == "test-org/model@gpt2-branch"


def test_repo_missing_from_the_cache_offline(cli, tmp_path):
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    run = cli("info", "nobody/no-such-model", env=env)
    assert run.returncode == 3
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "not in the local Hugging Face cache" in run.stderr
