"""neeko-app: one base model plays many characters through per-character LoRA blocks."""

__version__ = "0.1.0"
