"""Where bytes come from: local files, safetensors headers, GGUF files, word-vector files,
Hub byte ranges, Ollama's blob store, and embinspect's own cache. Nothing here knows what
an embedding is."""
