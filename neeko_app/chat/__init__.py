"""Chat: prompt building and generation with a character's gate."""
