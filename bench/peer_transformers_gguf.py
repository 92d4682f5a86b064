"""The naive script for "nearest rows to token 1000" in a GGUF file, with transformers:
``from_pretrained(..., gguf_file=...)`` dequantizes every tensor into a whole model, then
the input table is ranked by cosine. Run as a process by formats.py; prints the ids.
Usage: peer_transformers_gguf.py GGUF_FILE QUERY_ID K
"""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

path, query, k = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
with torch.no_grad():
    table = model.get_input_embeddings().weight.float()
    scores = torch.nn.functional.cosine_similarity(table, table[query].unsqueeze(0), dim=1)
    top = scores.topk(k + 1).indices.tolist()
print(json.dumps({"ids": [i for i in top if i != query][:k]}))
