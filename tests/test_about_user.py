"""Messages about the user get no knowledge notes; questions about the character keep them."""

from __future__ import annotations

import pytest

from neeko_app.characters.facts import QUIZ_FILE, load_quiz
from neeko_app.chat.about_user import asks_about_user, character_knowledge
from neeko_app.evaluation.recall import PROBES
from neeko_app.memory import KnowledgeChunk
from tests.test_facts import SHIPPED


@pytest.mark.parametrize("message", [
    "What is my son's name?", "Do you still remember my name?", "Who did I say is getting married?",
    "Where was I born, did I say?", "What do I do for a living, as I told you?",
])
def test_questions_about_the_users_life_or_words_are_caught(message):
    assert asks_about_user(message)


@pytest.mark.parametrize("message", [
    "Tell me about your father.", "Give me the day of Thapsus.",
    "Can I ask where you were born?", "I heard you crossed a river once. Which one?",
    "Is my memory right that your mother was Aurelia?",
])
def test_questions_about_the_character_are_not(message):
    assert not asks_about_user(message)


def test_no_shipped_quiz_question_is_taken_for_one_about_the_user():
    questions = [q.question for folder in SHIPPED for q in load_quiz(folder / QUIZ_FILE)]
    assert len(questions) >= 280
    assert [q for q in questions if asks_about_user(q)] == []


def test_the_recall_probes_are_caught_except_the_characters_promise():
    missed = [probe.question for probe in PROBES if not asks_about_user(probe.question)]
    assert missed == ["What did you promise to teach me?"]


class CountingMemory:
    def __init__(self) -> None:
        self.searches: list[str] = []

    def search_knowledge(self, slug: str, query: str, k: int) -> list[KnowledgeChunk]:
        self.searches.append(query)
        return [KnowledgeChunk("Ada was born in London.", "fact")][:k]


def test_memory_is_not_searched_for_a_question_about_the_user():
    memory = CountingMemory()
    assert character_knowledge(memory, "ada", "What is my dog called?", 3) == []
    assert character_knowledge(memory, "ada", "Where were you born?", 3)[0].text.startswith("Ada")
    assert memory.searches == ["Where were you born?"]
