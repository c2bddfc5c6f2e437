"""Measuring how well blocks play their characters (held-out sets, scripted dialogues)."""

# Who answers the held-out questions: the character's block with the short training header;
# the block with what retrieval memory finds for the question (the app's setting); the bare
# base model with the card written into the prompt (the in-context baseline).
HELDOUT_SYSTEMS = ("blocks", "blocks+memory", "profile-prompt")
