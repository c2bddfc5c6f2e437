"""Measuring how well blocks play their characters (held-out sets, scripted dialogues)."""

# The systems `evaluation.systems` defines; the first three run by default.
HELDOUT_SYSTEMS = ("blocks", "blocks+memory", "profile-prompt")
ALL_SYSTEMS = (*HELDOUT_SYSTEMS, "fusion", "lora-mix")
