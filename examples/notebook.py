# %% [markdown]
# # The seed story with embinspect's Python API
#
# A walk through one real checkpoint, all-MiniLM-L6-v2: the token table's shape, the
# neighbors of "king", how alike cat, dog and car are, king − man + woman, and what the
# first block sees for a sentence (token row + position row). Open it as a notebook
# (Jupyter, VS Code) or run it as a script. `EMBINSPECT_MODEL` points it at a local copy
# (the tests use `python tests/checkpoints.py --print minilm`); by default it reads the
# Hub repo, fetching only the embedding rows it needs.

# %%
import os

import embinspect

MODEL = os.environ.get("EMBINSPECT_MODEL", "sentence-transformers/all-MiniLM-L6-v2")
m = embinspect.load(MODEL)
print(repr(m))

# %% [markdown]
# ## The table: one row per token

# %%
info = m.info()
rows, dim = m.shape
print(f"{rows:,} rows × {dim} ({m.dtype}); vocabulary {info.vocab_size:,}; tied: {info.tied}")
print(f"embedding parameters: {info.embedding_share:.1%} of {info.total_params:,}")

# %% [markdown]
# ## Neighbors of king (cosine, exact, king's own row left out)

# %%
king = m.neighbors("king", k=10)
print(king)
print([n.token for n in king.neighbors])

# %% [markdown]
# ## Cosine of cat, dog and car

# %%
similar = m.compare(["cat", "dog", "car"])
print(similar)
cat_dog, cat_car = similar.matrix[0][1], similar.matrix[0][2]
print(f"cat~dog {cat_dog:.3f} > cat~car {cat_car:.3f}: {cat_dog > cat_car}")

# %% [markdown]
# ## king − man + woman (3CosAdd, as gensim's most_similar)

# %%
answer = m.analogy("king", "man", "woman", k=5)
print(answer)
print("best:", answer.results[0].token)

# %% [markdown]
# ## Token + position: what the first block sees
#
# BERT adds a learned position row (and token type 0) to each token row before its
# LayerNorm. `input_norm` is the norm of that sum.

# %%
lookup = m.tokens("The cat sat on the mat", positions=True)
for t in lookup.tokens:
    print(
        f"{t.position:>2} {t.token:<6} |token| {t.norm:.3f}  |position| {t.position_norm:.3f}  "
        f"|sum| {t.input_norm:.3f}"
    )

# %% [markdown]
# ## The rows themselves, as numpy

# %%
import numpy as np  # noqa: E402

cat, dog = m.vector("cat"), m.vector("dog")
print(cat.shape, cat.dtype, float(cat @ dog / (np.linalg.norm(cat) * np.linalg.norm(dog))))
