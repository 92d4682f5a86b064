"""Every answer names its metric, its schema version and where its numbers come from: the
model as given and as resolved, the Hub revision and commit (tests/test_hub.py), the tensor,
its stored dtype and the embinspect that read it."""

from __future__ import annotations

import json

import pytest

import embinspect


def local_provenance(folder, tensor="embeddings.word_embeddings.weight", dtype="F32") -> dict:
    return {
        "source": str(folder),
        "resolved": str(folder.resolve()),
        "revision": None,
        "commit": None,
        "tensor": tensor,
        "dtype": dtype,
        "embinspect_version": embinspect.__version__,
    }


QUERIES = {
    "neighbors": ("king", "-k", "2"),
    "analogy": ("king", "man", "woman", "-k", "2"),
    "compare": ("cat", "dog"),
    "tokens": ("cat",),
}


@pytest.mark.parametrize("command", list(QUERIES))
def test_json_carries_schema_version_and_provenance(cli, minilm, command):
    document = cli(command, minilm, *QUERIES[command], "-f", "json").json()
    answer = document[0] if isinstance(document, list) else document
    assert answer["schema_version"] == 2
    assert answer["provenance"] == local_provenance(minilm)
    assert list(answer)[-2:] == ["schema_version", "provenance"]  # last, after the data


def test_provenance_names_the_model_as_given_and_as_resolved(cli, minilm):
    """A relative path as typed, and the absolute folder it is."""
    document = cli("tokens", "model", "cat", "-f", "json", cwd=minilm.parent).json()
    assert document["provenance"]["source"] == "model"
    assert document["provenance"]["resolved"] == str(minilm.resolve())


def test_provenance_names_the_table_read(cli, smollm2):
    """bf16 shards: the table's dtype as stored, not the float64 it is scored in."""
    (answer,) = cli("neighbors", smollm2, "#5", "-k", "1", "-f", "json").json()
    assert answer["provenance"] == local_provenance(smollm2, "model.embed_tokens.weight", "BF16")


def test_tensor_override_is_the_provenance_tensor(cli, minilm):
    name = "embeddings.position_embeddings.weight"
    args = ("#3", "#4", "--tensor", name, "-f", "json")
    document = cli("compare", minilm, *args).json()
    assert document["provenance"]["tensor"] == name


def test_single_file_resolves_to_the_file(cli, minilm):
    file = minilm / "model.safetensors"
    (answer,) = cli("neighbors", file, "#5", "-k", "1", "-f", "json").json()
    assert answer["provenance"]["source"] == str(file)
    assert answer["provenance"]["resolved"] == str(file.resolve())


def test_json_lines_per_query_carry_them_on_every_line(cli, minilm):
    lines = cli("neighbors", minilm, "king", "queen", "-k", "1", "-f", "jsonl").jsonl()
    assert [line["query"] for line in lines] == ["king", "queen"]
    for line in lines:
        assert (line["metric"], line["schema_version"]) == ("cosine", 2)
        assert line["provenance"] == local_provenance(minilm)


def test_an_unanswered_query_carries_them_too(cli, minilm):
    run = cli("neighbors", minilm, "#999999", "-k", "1", "-f", "json")
    assert run.returncode == 4
    (answer,) = json.loads(run.stdout)
    assert answer["error"] == "#999999: outside the table (rows 0..30521)"
    assert (answer["metric"], answer["schema_version"]) == ("cosine", 2)
    assert answer["provenance"] == local_provenance(minilm)


def test_api_to_dict_matches_the_cli(cli, minilm):
    model = embinspect.load(minilm)
    near = model.neighbors("king", k=2).to_dict()
    assert near["provenance"] == local_provenance(minilm) and near["schema_version"] == 2
    assert model.tokens("cat").to_dict()["provenance"] == local_provenance(minilm)
    assert model.compare(["cat", "dog"]).to_dict()["provenance"] == local_provenance(minilm)
    analogy = model.analogy("king", "man", "woman", k=1).to_dict()
    assert analogy["provenance"] == local_provenance(minilm) and analogy["metric"] == "cosine"


# --- the metric, named in every output -------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
@pytest.mark.parametrize("fmt", ["tsv", "csv"])
def test_neighbors_score_column_is_named_after_the_metric(cli, minilm, metric, fmt):
    run = cli("neighbors", minilm, "king", "-k", "1", "--metric", metric, "-f", fmt)
    sep = "\t" if fmt == "tsv" else ","
    assert run.stdout.splitlines()[0].split(sep) == [
        "query", "query_ids", "rank", "token_id", "token", metric, "error",
    ]  # fmt: skip


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_neighbors_json_and_table_name_the_metric(cli, minilm, metric):
    (answer,) = cli("neighbors", minilm, "king", "-k", "1", "--metric", metric, "-f", "json").json()
    assert answer["metric"] == metric
    table = cli("neighbors", minilm, "king", "-k", "1", "--metric", metric, "-f", "table")
    header = table.stdout.splitlines()[2].split()
    assert header == ["┃", "rank", "┃", "id", "┃", "token", "┃", metric, "┃"]


@pytest.mark.parametrize(("method", "metric"), [("add", "cosine"), ("mul", "3cosmul")])
def test_analogy_names_its_score(cli, minilm, method, metric):
    args = ("king", "man", "woman", "-k", "1", "--method", method)
    (answer,) = cli("analogy", minilm, *args, "-f", "json").json()
    assert (answer["method"], answer["metric"]) == (method, metric)
    header = cli("analogy", minilm, *args, "-f", "csv").stdout.splitlines()[0]
    assert header == f"formula,method,rank,token_id,token,{metric},error"
    table = cli("analogy", minilm, *args, "-f", "table").stdout.splitlines()[2]
    assert table.split() == ["┃", "rank", "┃", "id", "┃", "token", "┃", metric, "┃"]


def test_compare_json_lines_name_the_metric(cli, minilm):
    lines = cli("compare", minilm, "cat", "dog", "--metric", "l2", "-f", "jsonl").jsonl()
    assert [(line["a"], line["b"], line["metric"]) for line in lines] == [("cat", "dog", "l2")]
    assert list(lines[0]) == ["a", "b", "metric", "score"]
