"""Measuring how well blocks play their characters (held-out sets, scripted dialogues)."""

# The systems `evaluation.systems` defines: the default ones, those the held-out evaluation
# can run, and all (the scripted evaluation).
DEFAULT_SYSTEMS = ("blocks", "blocks+memory", "profile-prompt")
HELDOUT_SYSTEMS = (*DEFAULT_SYSTEMS, "blocks+card")
ALL_SYSTEMS = (*HELDOUT_SYSTEMS, "fusion", "lora-mix")
