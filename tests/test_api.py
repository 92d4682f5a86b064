"""The Python API (``embinspect.load``): the CLI's answers for the CLI's arguments, exact
answers against independent numpy readings, errors as the library's own exceptions, a
cheap ``import embinspect``, and results that show themselves safely in a REPL and Jupyter.

Each model is loaded once per session; the CLI is run once per comparison.
"""

from __future__ import annotations

import json
import math
import os
import re
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import checkpoints
import numpy as np
import pytest
from reference import cos_add, cosines, ranked
from safetensors import safe_open
from safetensors.numpy import save_file

import embinspect
from embinspect import EmbinspectError, EmbinspectWarning, ModelError, QueryError, UsageError

REPO = Path(__file__).resolve().parent.parent
MINILM_TABLE = "embeddings.word_embeddings.weight"
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="session", autouse=True)
def own_cache():
    """embinspect's cache (the GGUF tokenizer) where the CLI runs of the tests keep it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMBINSPECT_CACHE", str(checkpoints.cache_root() / "embinspect-cache"))
        yield


@pytest.fixture(scope="session")
def mini(minilm, own_cache):
    return embinspect.load(minilm)


@pytest.fixture(scope="session")
def glove_model(glove, own_cache):
    return embinspect.load(glove)


@pytest.fixture(scope="session")
def gguf_file(own_cache):
    return checkpoints.smollm2_gguf()


@pytest.fixture(scope="session")
def gguf_model(gguf_file):
    return embinspect.load(gguf_file)


@pytest.fixture(scope="session")
def minilm_rows(minilm):
    """MiniLM's token table in float64, read with safetensors."""
    with safe_open(str(minilm / "model.safetensors"), framework="numpy") as handle:
        return handle.get_tensor(MINILM_TABLE).astype(np.float64)


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def as_json(value):
    """What the CLI's strict JSON makes of a to_dict(): NaN and infinities as null."""

    def finite(v):
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {k: finite(c) for k, c in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(c) for c in v]
        return v

    return json.loads(json.dumps(finite(value), ensure_ascii=False))


def dicts(results):
    return as_json([r.to_dict() for r in results])


def quiet(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmbinspectWarning)
        return call(*args, **kwargs)


# ---------------------------------------------------------------------------------------
# The same answers as the CLI


def test_minilm_info_tokens_and_vector_match_the_cli(cli, minilm, mini, minilm_rows):
    assert as_json(mini.info().to_dict()) == cli("info", minilm, "-f", "json").json()
    lookup = mini.tokens("The cat sat", positions=True)
    assert (
        as_json(lookup.to_dict())
        == cli("tokens", minilm, "The cat sat", "--positions", "-f", "json").json()
    )
    # positions=True adds the special tokens, as the model sees the text
    assert [t.token for t in lookup.tokens] == ["[CLS]", "the", "cat", "sat", "[SEP]"]
    assert all(t.input_norm is not None for t in lookup.tokens)
    assert mini.shape == minilm_rows.shape and mini.dtype == "F32"
    # The stored row, exactly, as float32.
    king = mini.vector("king")
    assert king.dtype == np.float32 and king.shape == (minilm_rows.shape[1],)
    token_id = lookup.tokens[2].token_id
    assert np.array_equal(mini.vector("cat"), minilm_rows[token_id].astype(np.float32))
    assert np.array_equal(mini.vector(f"#{token_id}"), mini.vector("=cat"))


def test_pooled_vector_is_the_mean_of_the_rows(mini, minilm_rows, minilm_tokenizer):
    ids = minilm_tokenizer.encode("embinspection", add_special_tokens=False).ids
    assert len(ids) > 1
    pooled = mini.vector("embinspection")
    assert np.allclose(pooled, minilm_rows[ids].mean(axis=0), rtol=1e-6, atol=0)
    assert np.array_equal(mini.vector("embinspection", pool="first"), minilm_rows[ids[0]])
    with pytest.raises(QueryError, match="refuses to pool"):
        mini.vector("embinspection", pool="error")


def test_minilm_neighbors_match_the_cli_and_numpy(cli, minilm, mini, minilm_rows, minilm_tokenizer):
    result = mini.neighbors("king", k=10)
    (expected,) = cli("neighbors", minilm, "king", "-f", "json").json()
    assert as_json(result.to_dict()) == expected
    # Independently: float64 cosines over every row with numpy, king's own row left out.
    (king,) = minilm_tokenizer.encode("king", add_special_tokens=False).ids
    ids, scores = ranked(cosines(minilm_rows, minilm_rows[king]), 10, exclude={king})
    assert [n.token_id for n in result.neighbors] == ids
    assert [n.score for n in result.neighbors] == pytest.approx(scores, rel=1e-12)
    assert result.neighbors[0].token == minilm_tokenizer.id_to_token(ids[0])

    queries = ["king", "#1000", "=the", "#99999999", "paris"]
    several = mini.neighbors(
        queries, k=3, metric="dot", center=True, keep_query=True, word_filter="words"
    )
    run = cli("neighbors", minilm, *queries, "-k", "3", "--metric", "dot", "--center",
              "--keep-query", "--filter", "words", "-f", "json")  # fmt: skip
    assert run.returncode == 4  # one query failed; the others are answered
    assert dicts(several) == json.loads(run.stdout)
    assert [r.error is None for r in several] == [True, True, True, False, True]
    assert "outside the table" in several[3].error


def test_minilm_compare_and_analogy_match_the_cli(cli, minilm, mini):
    comparison = mini.compare(["king", "queen", "man"])
    assert (
        as_json(comparison.to_dict())
        == cli("compare", minilm, "king", "queen", "man", "-f", "json").json()
    )
    assert [row[i] for i, row in enumerate(comparison.matrix)] == pytest.approx([1.0] * 3)
    answer = mini.analogy("king", "man", "woman", k=5, method="mul")
    (expected,) = cli(
        "analogy", minilm, "king", "man", "woman", "--method", "mul", "-f", "json"
    ).json()
    assert as_json(answer.to_dict()) == expected
    assert len(answer.results) == 5


def test_minilm_whole_table_commands_match_the_cli(cli, minilm, mini):
    assert (
        as_json(mini.stats(pairs=500, seed=3).to_dict())
        == cli("stats", minilm, "--pairs", "500", "--seed", "3", "-f", "json").json()
    )
    assert (
        as_json(mini.undertrained(k=7).to_dict())
        == cli("undertrained", minilm, "-k", "7", "-f", "json").json()
    )
    with pytest.warns(EmbinspectWarning) as caught:
        report = mini.positions(offsets=[1, 3], max_positions=64)
    assert any("segment" in str(w.message) for w in caught)
    assert (
        as_json(report.to_dict())
        == cli(
            "positions", minilm, "--offsets", "1,3", "--max-positions", "64", "-f", "json"
        ).json()
    )
    assert [o.offset for o in report.learned.offsets] == [1, 3]


def test_diff_matches_the_cli_and_finds_the_moved_rows(cli, minilm, mini, minilm_rows, tmp_path):
    moved = tmp_path / "moved"
    moved.mkdir()
    changed = minilm_rows.astype(np.float32)
    changed[[1000, 2000]] *= -1  # cosine -1: these two rows moved most
    save_file({MINILM_TABLE: changed}, str(moved / "model.safetensors"))
    for name in ("config.json", "tokenizer.json"):
        (moved / name).write_bytes((minilm / name).read_bytes())
    result = embinspect.diff(mini, str(moved), k=5)
    assert as_json(result.to_dict()) == cli("diff", minilm, moved, "-k", "5", "-f", "json").json()
    assert sorted(r.token_id for r in result.moved[:2]) == [1000, 2000]
    assert result.moved[0].cosine == pytest.approx(-1.0)
    assert as_json(mini.diff(moved, k=5).to_dict()) == as_json(result.to_dict())


@pytest.mark.slow  # parses GloVe (400k words), as every GloVe CLI run does
def test_glove_neighbors_analogy_and_vector(cli, glove, glove_model):
    queries = ["king", "paris", "#1234", "qwxzvq"]
    results = glove_model.neighbors(queries, k=5, no_space=True)
    run = cli("neighbors", glove, *queries, "-k", "5", "--no-space", "-f", "json")
    assert dicts(results) == json.loads(run.stdout)
    assert results[3].error is not None and results[0].error is None
    with pytest.raises(QueryError, match="qwxzvq"):
        glove_model.neighbors("qwxzvq")

    answer = glove_model.analogy("king", "man", "woman")
    (expected,) = cli("analogy", glove, "king", "man", "woman", "-f", "json").json()
    assert as_json(answer.to_dict()) == expected
    # Independently: gensim's 3CosAdd over the whole table in numpy.
    table = glove_model._checkpoint.files.loaded_rows(
        glove_model._checkpoint.token_table.header
    ).astype(np.float64)
    ids = [q["token_ids"][0] for q in answer.queries]
    want, _ = ranked(cos_add(table, *table[ids]), 5, exclude=set(ids))
    assert [n.token_id for n in answer.results] == want
    assert np.array_equal(glove_model.vector("king"), table[ids[0]].astype(np.float32))

    batch = glove_model.analogies(["king man woman", ("paris", "france"), ["a", "b", "qwxzvq"]])
    assert batch[0].to_dict() == answer.to_dict()
    assert "expected three queries" in batch[1].error and "qwxzvq" in batch[2].error


@pytest.mark.slow  # parses GloVe (400k words), as every GloVe CLI run does
def test_glove_suites_match_the_cli(cli, glove, glove_model, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(
        "# w1\tw2\tscore\ntiger\tcat\t7.35\nbook\tpaper\t7.46\ncomputer\tkeyboard\t7.62\n"
        "king\tcabbage\t0.23\nqwxzvq\tcat\t5\nmoney\tcash\t9.15\n"
    )
    scored = glove_model.evaluate_pairs(pairs)
    assert as_json(scored.to_dict()) == cli("compare", glove, "--pairs", pairs, "-f", "json").json()
    assert scored.skipped == 1 and scored.spearman is not None
    analogies = tmp_path / "questions.txt"
    analogies.write_text(
        ": capital\nathens greece paris france\nberlin germany tokyo japan\n"
        ": gram-plural\ncat cats dog dogs\nking kings qwxzvq qwxzvqs\n"
    )
    evaluation = glove_model.evaluate_analogies(analogies, method="mul")
    assert (
        as_json(evaluation.to_dict())
        == cli("analogy", glove, "--file", analogies, "--method", "mul", "-f", "json").json()
    )
    assert evaluation.total.questions == 4 and evaluation.total.skipped == 1


def test_default_analogy_suite_is_gensims_google_set(cli, minilm, mini):
    # restrict=2000 keeps it fast: few of MiniLM's first rows are Google-set words.
    evaluation = mini.evaluate_analogies(restrict=2000)
    assert Path(evaluation.file).name == "questions-words.txt"
    assert evaluation.total.questions == 19544
    assert (
        as_json(evaluation.to_dict())
        == cli("analogy", minilm, "--file", "google", "--restrict", "2000", "-f", "json").json()
    )


@pytest.mark.slow  # a second process or a whole GGUF: `make test` runs it
def test_gguf_matches_the_cli_and_the_dequantized_rows(cli, gguf_file, gguf_model):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    env = {"EMBINSPECT_CACHE": os.environ["EMBINSPECT_CACHE"]}
    assert as_json(gguf_model.info().to_dict()) == cli("info", gguf_file, "-f", "json").json()
    queries = ["Paris", "king", "#1000"]
    run = cli("neighbors", gguf_file, *queries, "-k", "4", "-f", "json", env=env)
    assert dicts(gguf_model.neighbors(queries, k=4)) == run.json()
    lookup = gguf_model.tokens("The cat sat", vectors=True)
    assert (
        as_json(lookup.to_dict())
        == cli("tokens", gguf_file, "The cat sat", "--vectors", "-f", "json", env=env).json()
    )
    tensor = next(t for t in GGUFReader(gguf_file).tensors if t.name == "token_embd.weight")
    row = dequantize(tensor.data[1000:1001], tensor.tensor_type)[0]
    assert np.array_equal(gguf_model.vector("#1000"), row.astype(np.float32))
    assert lookup.tokens[1].vector == gguf_model.vector(f"#{lookup.tokens[1].token_id}").tolist()
    with pytest.warns(EmbinspectWarning, match="tied"):
        gguf_model.neighbors("king", k=2, table="output")
    assert gguf_model.positions().kind == "rotary"


def test_bf16_shards_and_float64_tables(smollm2, gpt2, tmp_path):
    with safe_open(str(sorted(smollm2.glob("*.safetensors"))[0]), framework="pt") as handle:
        if "model.embed_tokens.weight" not in handle.keys():  # noqa: SIM118
            pytest.skip("token table in another shard")
        row = handle.get_slice("model.embed_tokens.weight")[100:101].float().numpy()[0]
    vector = embinspect.load(smollm2).vector("#100")
    assert vector.dtype == np.float32 and np.array_equal(vector, row)

    folder = tmp_path / "f64"
    folder.mkdir()
    values = np.random.default_rng(0).standard_normal((40, 6))
    save_file({"model.embed_tokens.weight": values}, str(folder / "model.safetensors"))
    with pytest.warns(EmbinspectWarning, match="no config.json"):
        model = embinspect.load(folder)
    vector = model.vector("#7")
    assert vector.dtype == np.float64 and np.array_equal(vector, values[7])
    near = model.neighbors("#7", k=3)
    want, _ = ranked(cosines(values, values[7]), 3, exclude={7})
    assert [n.token_id for n in near.neighbors] == want and near.neighbors[0].token is None
    with pytest.raises(UsageError, match="no tokenizer"):
        model.tokens("hello")
    with pytest.raises(QueryError, match="no tokenizer"):
        model.neighbors("hello")


# ---------------------------------------------------------------------------------------
# Warnings and caching


def test_notes_are_warnings_not_prints(mini, capsys):
    with pytest.raises(UsageError, match="BertModel has no output head"):
        mini.neighbors("king", k=2, table="output")  # not "tied": it has none
    with pytest.warns(EmbinspectWarning, match=r"k=1,000,000 is more than the 30,522 rows"):
        result = mini.neighbors("#5", k=1_000_000)
    assert len(result.neighbors) == mini.shape[0] - 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_searches_reuse_what_they_prepared(mini):
    mini.neighbors("king", k=3, center=True)
    count = len(mini._searchers)
    mini.neighbors(["queen", "prince"], k=5, center=True, keep_query=True, batch_size=1)
    mini.analogy("king", "man", "woman", center=True)
    assert len(mini._searchers) == count  # same table, device and preparation
    mini.neighbors("king", word_filter="words")
    assert len(mini._searchers) == count + 1


def test_offline_leaves_the_environment_alone(minilm, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = embinspect.load(minilm, offline=True)
    model.neighbors("king", k=1)
    assert "HF_HUB_OFFLINE" not in os.environ


# ---------------------------------------------------------------------------------------
# Errors: the library's own, with a clear message


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m: m.neighbors("king", metric="manhattan"), UsageError, "metric='manhattan'"),
        (lambda m: m.neighbors("king", k=0), UsageError, "k=0: must be at least 1"),
        (lambda m: m.neighbors("king", k="5"), UsageError, "k='5': give an integer"),
        (lambda m: m.neighbors("king", k=2.5), UsageError, "give an integer"),
        (lambda m: m.neighbors("king", table="middle"), UsageError, "table='middle'"),
        (lambda m: m.neighbors("king", word_filter="nouns"), UsageError, "word_filter="),
        (lambda m: m.neighbors("king", pool="max"), UsageError, "pool='max'"),
        (lambda m: m.neighbors("king", batch_size=0), UsageError, "batch_size=0"),
        (lambda m: embinspect.Model(m.source, device="tpu").neighbors("a"), UsageError, "tpu"),
        (lambda m: m.neighbors([]), UsageError, "no queries"),
        (lambda m: m.neighbors(["king", 1000]), UsageError, "'#1000'"),
        (lambda m: m.neighbors(None), UsageError, "queries must be a list"),
        (lambda m: m.neighbors("#99999999"), QueryError, "outside the table"),
        (lambda m: m.neighbors("   "), QueryError, "empty query"),
        (lambda m: m.compare(["king"]), UsageError, "at least two"),
        (lambda m: m.compare("king queen"), UsageError, "not one string"),
        (lambda m: m.compare(["king", "queen"], metric="cos"), UsageError, "metric='cos'"),
        (lambda m: m.analogy("king", "man", "#99999999"), QueryError, "outside the table"),
        (lambda m: m.analogy("king", "man", "woman", method="sub"), UsageError, "method="),
        (lambda m: m.analogy("king", "man", "woman", restrict=0), UsageError, "restrict=0"),
        (lambda m: m.analogies([]), UsageError, "no questions"),
        (lambda m: m.vector(42), UsageError, "query must be a str"),
        (lambda m: m.vector("#-1"), QueryError, "outside the table"),
        (lambda m: m.tokens(""), QueryError, "no tokens"),
        (lambda m: m.tokens("cat", components=-1), UsageError, "components=-1"),
        (lambda m: m.stats(pairs=0), UsageError, "pairs=0"),
        (lambda m: m.stats(table="both"), UsageError, "table='both'"),
        (lambda m: m.undertrained(k=-3), UsageError, "k=-3"),
        (lambda m: m.undertrained(reference="#99999999"), QueryError, "outside the table"),
        (lambda m: m.positions(offsets="a,b"), UsageError, "not an integer"),
        (lambda m: m.positions(offsets=[0]), UsageError, "not a positive offset"),
        (lambda m: m.positions(max_positions=1), UsageError, "max_positions=1"),
        (lambda m: m.positions(plot="/tmp/picture.bmp"), UsageError, ".png"),
        (lambda m: m.evaluate_pairs("/no/such/pairs.tsv"), UsageError, "no such file"),
        (lambda m: m.evaluate_pairs(None), UsageError, "give a suite file"),
        (lambda m: m.evaluate_analogies(case_insensitive="yes"), UsageError, "True, False"),
        (lambda m: m.plot(["king"]), UsageError, "at least two points"),
        (lambda m: m.plot(["king", "queen"], out="/tmp/x.jpg"), UsageError, ".png"),
        (lambda m: m.diff(m, k=0), UsageError, "k=0"),
        (lambda m: embinspect.diff(m, m, revision_a="main"), UsageError, "revision_a"),
    ],
)
def test_bad_arguments_raise_the_librarys_errors(mini, call, error, message):
    with pytest.raises(error, match=re.escape(message)) as caught:
        quiet(call, mini)
    assert isinstance(caught.value, EmbinspectError)
    assert caught.value.exit_code == {UsageError: 2, QueryError: 4}[error]


def test_bad_sources_raise_model_or_usage_errors(glove_model, mini, tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        embinspect.load(tmp_path / "missing.safetensors")
    with pytest.raises(ModelError, match="no .safetensors weights"):
        embinspect.load(tmp_path)
    for bad in (None, 3, b"/tmp", "  "):
        with pytest.raises(UsageError):
            embinspect.load(bad)
    with pytest.raises(UsageError, match="different widths"):
        embinspect.diff(mini, glove_model)
    with pytest.raises(ModelError, match="no position"):
        glove_model.positions()
    with pytest.raises(UsageError, match="no tokens known to be unused"):
        glove_model.undertrained()
    assert ModelError.exit_code == 3 and embinspect.NetworkError.exit_code == 5


# ---------------------------------------------------------------------------------------
# The package: public names, a cheap import, types


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    return done.stdout


HEAVY = ("torch", "transformers", "tokenizers", "numpy", "typer", "rich", "click")


def test_import_embinspect_is_cheap(minilm):
    probe = (
        "import sys, json, embinspect\n"
        f"first = sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)})\n"
        "api = 'embinspect.api' in sys.modules\n"
        "embinspect.load; embinspect.NeighborsResult\n"
        f"second = sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)})\n"
        f"embinspect.load({str(minilm)!r}).info()\n"
        f"third = sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)}\n"
        "               or m.startswith('embinspect.cli'))\n"
        "print(json.dumps([first, api, second, third]))\n"
    )
    first, api, second, third = json.loads(run_python(probe))
    assert first == [] and api is False
    assert second == []  # the API and the result types load no torch, typer or rich
    assert third == []  # nor does info(), which reads headers only; and never the CLI


def test_public_names():
    assert embinspect.__version__ and "__version__" in embinspect.__all__
    for name in embinspect.__all__:
        assert getattr(embinspect, name) is not None, name
        assert name in dir(embinspect)
    assert isinstance(embinspect.Model, type) and callable(embinspect.diff)
    assert issubclass(EmbinspectWarning, UserWarning)
    for error in (UsageError, ModelError, QueryError, embinspect.NetworkError):
        assert issubclass(error, EmbinspectError)
    with pytest.raises(AttributeError):
        embinspect.no_such_name  # noqa: B018
    assert (REPO / "embinspect" / "py.typed").is_file()


# ---------------------------------------------------------------------------------------
# str() and _repr_html_()


def test_every_result_shows_itself(mini, glove_model, tmp_path):
    from html.parser import HTMLParser

    results = [
        (mini.info(), ["embeddings.word_embeddings.weight"]),
        (mini.tokens("The cat sat"), ["cat", "sat"]),
        (mini.neighbors("king", k=3), ["neighbors of king", "queen"]),
        (mini.compare(["cat", "dog", "car"]), ["cat", "dog", "car"]),
        (mini.analogy("king", "man", "woman"), ["king - man + woman", "queen"]),
        (mini.stats(pairs=10), ["norm_quantiles"]),
        (mini.undertrained(k=3), ["[unusedN] (BERT)"]),
        (quiet(mini.positions), ["learned"]),
        (mini.plot(["king", "queen", "cat"]), ["pca", "queen"]),
        (embinspect.diff(mini, mini, k=2), ["token id"]),
    ]
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("king\tqueen\t8\ncat\tdog\t7\ncar\tbook\t1\n")
    results.append((glove_model.evaluate_pairs(pairs), ["pearson"]))
    for result, expected in results:
        text, page = str(result), result._repr_html_()
        assert "\x1b" not in text and "<" not in text.replace("<unused", "")
        checker = HTMLParser()
        checker.feed(page)
        assert page.startswith('<div class="embinspect">') and page.endswith("</div>")
        for token in expected:
            assert token in text, (type(result).__name__, token)
            assert token in page.replace("&#x27;", "'"), (type(result).__name__, token)


def test_hostile_tokens_are_escaped():
    from embinspect.analyses.compare import Comparison
    from embinspect.analyses.neighbors import NeighborsResult
    from embinspect.analyses.tokens import TokenLookup, TokenRow
    from embinspect.tables.search import Neighbor

    hostile = "<script>alert('x')</script>\x1b[31m"
    neighbors = NeighborsResult(
        "king", [1], ["king"], None, [Neighbor(1, 7, hostile, 0.5), Neighbor(2, 8, None, 0.25)]
    )
    comparison = Comparison("cosine", [{"query": hostile}, {"query": "b"}], [[1.0, 0.5]] * 2)
    row = TokenRow(0, 7, hostile, hostile, 1.5, [0.25])
    lookup = TokenLookup("m", hostile, "t", {"kind": hostile}, None, [row])
    for result in (neighbors, comparison, lookup):
        page = result._repr_html_()
        assert "<script>" not in page and "&lt;script&gt;" in page
        assert "\x1b" not in page
        text = str(result)
        assert "\x1b" not in text and "\\x1b[31m" in text
        assert "<script>alert('x')</script>" in text  # plain text keeps it, readable
    assert neighbors.to_dict()["neighbors"][0]["token"] == hostile  # data untouched
    lines = str(neighbors).splitlines()
    assert lines[0] == "neighbors of king" and lines[3].split()[:2] == ["1", "7"]


# ---------------------------------------------------------------------------------------
# The example notebook and the README


def test_example_notebook_runs(minilm, monkeypatch, capsys):
    monkeypatch.setenv("EMBINSPECT_MODEL", str(minilm))
    quiet(runpy.run_path, str(REPO / "examples" / "notebook.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "30522" in out.replace(",", "") and "queen" in out


def readme_python_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_api_section_runs(minilm, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what the examples write (an export, a view) lands here
    blocks = readme_python_blocks()
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        assert HUB_ID in block or namespace, "the first block loads the Hub id"
        code = block.replace(HUB_ID, str(minilm))
        quiet(exec, compile(code, "README.md", "exec"), namespace)
    assert capsys.readouterr().out
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["minilm.npy", "minilm.vocab.json", "view.html"], written


# ---------------------------------------------------------------------------------------
# A Hub repo id, through the loopback Hub


@pytest.fixture(scope="module")
def loopback_hub(minilm):
    from hub_server import FakeHub

    hub = FakeHub().start()
    hub.add("test-org/minilm", minilm)
    yield hub
    hub.stop()


HUB_PROBE = """
import json, os, sys, warnings
import embinspect
warnings.simplefilter("ignore", embinspect.EmbinspectWarning)
m = embinspect.load("test-org/minilm", offline=sys.argv[1] == "offline")
print(json.dumps({"info": m.info().to_dict(), "neighbors": m.neighbors("king", k=3).to_dict(),
                  "offline_env": os.environ.get("HF_HUB_OFFLINE")}))
"""


@pytest.mark.slow  # a second process or a whole GGUF: `make test` runs it
def test_hub_repo_id_online_then_offline(cli, loopback_hub, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": loopback_hub.url,
        "HF_TOKEN": "",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("HF_HUB_OFFLINE", None)

    def probe(mode: str) -> dict:
        done = subprocess.run([sys.executable, "-c", HUB_PROBE, mode], capture_output=True,
                              text=True, env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    # info first, on an empty cache, as the probe's info() sees it (before its neighbors).
    info = cli("info", "test-org/minilm", "-f", "json", env=env).json()
    online = probe("online")
    assert online["info"] == info and info["fetch"][0]["bytes"] > 0
    run = cli("neighbors", "test-org/minilm", "king", "-k", "3", "-f", "json", env=env)
    assert [as_json(online["neighbors"])] == run.json()
    loopback_hub.stop()  # offline now reads the cache only: no request may be needed
    offline = probe("offline")
    assert offline["neighbors"] == online["neighbors"] and offline["offline_env"] is None
