"""Base model loading: the embedded Gemma 3 270M, any local HF directory, or a tiny test model."""

from neeko_app.model.loader import BaseModel, ModelLoadError, load_base_model

__all__ = ["BaseModel", "ModelLoadError", "load_base_model"]
