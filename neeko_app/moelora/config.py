"""Configuration of the dynamic-LoRA blocks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class MoeLoraConfig:
    """Rank, scaling and which linear layers (by name suffix) carry blocks."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = field(default=DEFAULT_TARGETS)

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError("rank must be >= 1")
        if not self.target_modules:
            raise ValueError("target_modules must name at least one layer")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"target_modules": list(self.target_modules)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MoeLoraConfig:
        known = {k: data[k] for k in ("rank", "alpha", "dropout", "target_modules") if k in data}
        return cls(**known)
