"""The installed transformers' name for a forward pass's key/value cache.

transformers 5 renamed the `past_key_values` argument and output field to `cache`; the old
name still works there but prints a deprecation warning into every chat, and is gone in 5.40.
"""

from __future__ import annotations

from typing import Any

from transformers.modeling_outputs import CausalLMOutputWithPast

CACHE_FIELD = ("cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__
               else "past_key_values")


def with_cache(cache: Any) -> dict[str, Any]:
    """Keyword arguments that hand `cache` to a model's forward pass."""
    return {CACHE_FIELD: cache}


def returned_cache(output: Any) -> Any:
    """The key/value cache a forward pass returned."""
    return getattr(output, CACHE_FIELD)
