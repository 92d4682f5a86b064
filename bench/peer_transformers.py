"""The naive script a user would write for "nearest rows to token 1000" with transformers.

Loads the whole model (every layer, the LM head), takes the input embedding table,
converts it to float32 and ranks cosines. Run as a process by run.py; prints the ids.
Usage: peer_transformers.py MODEL_DIR QUERY_ID K
"""

import json
import sys

import torch
from transformers import AutoModelForCausalLM

path, query, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16)
with torch.no_grad():
    table = model.get_input_embeddings().weight.float()
    scores = torch.nn.functional.cosine_similarity(table, table[query].unsqueeze(0), dim=1)
    top = scores.topk(k + 1).indices.tolist()
print(json.dumps({"ids": [i for i in top if i != query][:k]}))
