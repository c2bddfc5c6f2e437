"""Measuring how well blocks play their characters (held-out sets, scripted dialogues)."""

# Who answers the held-out questions: own blocks, or the base model with the card in the prompt.
HELDOUT_SYSTEMS = ("blocks", "profile-prompt")
