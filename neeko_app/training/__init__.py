"""Training: agent pre-training of several blocks and incremental expansion of new ones."""
