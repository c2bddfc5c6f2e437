"""Dynamic LoRA: per-character blocks in every target linear, chosen per row by a gate."""

from neeko_app.moelora.config import MoeLoraConfig
from neeko_app.moelora.gate import Gate, fusion_gate
from neeko_app.moelora.layer import MoeLoraLinear
from neeko_app.moelora.model import NeekoModel, inject_moelora

__all__ = ["Gate", "MoeLoraConfig", "MoeLoraLinear", "NeekoModel", "fusion_gate", "inject_moelora"]
