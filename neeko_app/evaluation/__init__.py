"""Measuring how well blocks play their characters (held-out sets, scripted dialogues)."""

# The systems `evaluation.systems` defines, the default ones first (for the held-out set,
# the written replies join them: see `evaluation.heldout`).
DEFAULT_SYSTEMS = ("blocks", "blocks+memory", "profile-prompt")
ALL_SYSTEMS = (*DEFAULT_SYSTEMS, "blocks+card", "fusion", "lora-mix")
WRITTEN = "written"  # not a model: the held-out set's own replies, scored the same way
HELDOUT_DEFAULT_SYSTEMS = (*DEFAULT_SYSTEMS, WRITTEN)
HELDOUT_SYSTEMS = (*DEFAULT_SYSTEMS, "blocks+card", WRITTEN)
# the fact quiz knows which fact each question asks about, so it can also withhold that
# fact's note from memory (retrieval missing it): blocks+other-notes
OTHER_NOTES = "blocks+other-notes"
QUIZ_SYSTEMS = ("blocks", "blocks+memory", OTHER_NOTES, "profile-prompt")
