"""`--device cuda` gives the same exact answers as the CPU. Skipped where torch sees no GPU
(CI has none); run on a GPU machine to check the CUDA path."""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"),
]


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_cuda_neighbors_equal_cpu(cli, smollm2, metric):
    args = ["neighbors", smollm2, "Paris", "#1000", "-k", "10", "--metric", metric, "-f", "json"]
    cpu = cli(*args, "--device", "cpu").json()
    gpu = cli(*args, "--device", "cuda").json()
    for a, b in zip(cpu, gpu, strict=True):
        assert [n["token_id"] for n in a["neighbors"]] == [n["token_id"] for n in b["neighbors"]]
        assert [n["score"] for n in a["neighbors"]] == pytest.approx(
            [n["score"] for n in b["neighbors"]], rel=1e-12
        )


def test_cuda_analogy_equals_cpu(cli, minilm):
    args = ["analogy", minilm, "king", "man", "woman", "--method", "mul", "-f", "json"]
    cpu = cli(*args, "--device", "cpu").json()[0]["results"]
    gpu = cli(*args, "--device", "cuda").json()[0]["results"]
    assert [r["token_id"] for r in cpu] == [r["token_id"] for r in gpu]


def test_cuda_gguf_and_word_vectors_equal_cpu(cli, glove):
    """A quantized GGUF table is dequantized onto the GPU chunk by chunk; GloVe's rows go
    up from memory."""
    import checkpoints

    for model, query in ((checkpoints.smollm2_gguf(), "#1000"), (glove, "king")):
        args = ["neighbors", model, query, "-k", "10", "-f", "json"]
        cpu = cli(*args, "--device", "cpu").json()[0]["neighbors"]
        gpu = cli(*args, "--device", "cuda").json()[0]["neighbors"]
        assert [n["token_id"] for n in cpu] == [n["token_id"] for n in gpu]
        assert [n["score"] for n in cpu] == pytest.approx([n["score"] for n in gpu], rel=1e-12)
