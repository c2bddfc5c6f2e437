"""Characters: cards on disk, validation, role embeddings."""
