"""What a checkpoint is: its config, its tensors by role (the family names), its position
scheme, and its vocabulary and tokenizer."""
