"""A reply stopped by the length cap ends at a full sentence."""

from __future__ import annotations

import pytest

from neeko_app.chat.reply import end_cleanly


@pytest.mark.parametrize(("raw", "finished"), [
    ("I wrote it in Vienna. Then the winter came and I", "I wrote it in Vienna."),
    ("Is it? “Ask the jailer!” he said, and then we", "Is it? “Ask the jailer!”"),
    ("Music is the one thing. It never", "Music is the one thing."),
    ("The sea was calm.  ", "The sea was calm."),
    ("Yes. The sonata I began in the spring and the quartet after it",
     "Yes. The sonata I began in the spring and the quartet after it…"),
    ("No sentence ends here at all", "No sentence ends here at all…"),
    ("Version 2.5 of the", "Version 2.5 of the…"),
    ("", ""),
])
def test_a_cut_off_reply_ends_at_its_last_sentence(raw, finished):
    assert end_cleanly(raw) == finished
