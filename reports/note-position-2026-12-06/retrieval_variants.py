"""Can the fact notes be ranked better with what the app already has (MiniLM embeddings,
the notes' questions, shared words)? Each variant of the knowledge score, scored exactly as
`MemoryStore.search_knowledge` scores (cosine to the text + the closest question +
0.25 x shared rare words), on two sets:

- held back: every note keeps the even-numbered questions of its knowledge exchanges, the
  odd-numbered ones ask for it (how the lexical weight was chosen);
- the quiz: its 342 questions against every note and question (read last: nothing was
  chosen on it).

    python reports/note-position-2026-12-06/retrieval_variants.py > retrieval-variants.txt
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from sklearn.linear_model import LogisticRegression

from neeko_app.characters.facts import FACTS_FILE, QUIZ_FILE, load_facts, load_quiz
from neeko_app.characters.registry import discover_characters
from neeko_app.config import Settings
from neeko_app.embedding import embed_texts
from neeko_app.memory.knowledge import character_chunks
from neeko_app.memory.lexical import WORD
from neeko_app.memory.store import LEXICAL_WEIGHT

VARIANTS = {
    "today's score": {},
    "words cut to 5 letters (stems)": {"stem": 5},
    "closest 2 questions, mean": {"keys": "top2"},
    "all questions, log-sum-exp (0.1)": {"keys": "lse"},
    "text cosine x1.5": {"text": 1.5},
    "+ 0.1 x log p(note given question), a per-character classifier": {"classifier": 0.1},
    "+ 0.3 x log p(note given question)": {"classifier": 0.3},
}


def words(text: str, stem: int) -> frozenset[str]:
    found = (word for word in WORD.findall(text.lower()) if len(word) > 1)
    return frozenset(word[:stem] if stem else word for word in found)


def key_score(cosines: np.ndarray, how: str) -> float:
    if how == "top2":
        return float(np.sort(cosines)[-2:].mean())
    if how == "lse":
        top = cosines.max()
        return float(top + 0.1 * np.log(np.exp((cosines - top) / 0.1).sum()))
    return float(cosines.max())


def ranked_first(notes, keys, asked, vectors, variant) -> tuple[int, int]:
    """(first, among 3) over `asked` [(question, index of its note)] for one character."""
    stem = variant.get("stem", 0)
    texts = np.stack([vectors[t] for t in notes])
    key_vectors = [np.stack([vectors[q] for q in ks]) if ks else None for ks in keys]
    vocab = [words(t, stem).union(*(words(q, stem) for q in ks))
             for t, ks in zip(notes, keys, strict=True)]
    counts = Counter(w for v in vocab for w in v)
    rarity = {w: math.log(len(vocab) / c) for w, c in counts.items()}
    classifier = None
    if variant.get("classifier"):
        x = [vectors[t] for t in notes] + [vectors[q] for ks in keys for q in ks]
        y = list(range(len(notes))) + [i for i, ks in enumerate(keys) for _ in ks]
        classifier = LogisticRegression(C=10.0, max_iter=2000).fit(np.stack(x), y)
    first = among = 0
    for question, gold in asked:
        vector = vectors[question]
        text = texts @ vector
        closest = np.array([key_score(kv @ vector, variant.get("keys", "max"))
                            if kv is not None else text[i] for i, kv in enumerate(key_vectors)])
        query = words(question, stem)
        weight = sum(rarity.get(w, 0.0) for w in query)
        shared = np.array([sum(rarity.get(w, 0.0) for w in query & v) / weight if weight else 0
                           for v in vocab])
        score = variant.get("text", 1.0) * text + closest + LEXICAL_WEIGHT * shared
        if classifier is not None:
            score = score + variant["classifier"] * classifier.predict_log_proba(vector[None])[0]
        order = np.argsort(-score)
        first += order[0] == gold
        among += gold in order[:3]
    return first, among


def character_sets() -> dict[str, dict]:
    """Per character: its fact notes, the questions of each note, and the quiz as
    [(question, index of its note)]."""
    characters = discover_characters(Settings().characters_dir).characters
    sets = {}
    for slug, character in sorted(characters.items()):
        chunks = [chunk for chunk in character_chunks(character) if chunk.kind == "fact"]
        notes = [chunk.text.strip() for chunk in chunks]
        sheet = load_facts(character.folder / FACTS_FILE)
        facts = {fact.id: fact.fact.strip() for fact in sheet}
        quiz = [(q.question, notes.index(facts[q.fact]))
                for q in load_quiz(character.folder / QUIZ_FILE, sheet) if facts[q.fact] in notes]
        sets[slug] = {"notes": notes, "questions": [list(c.questions) for c in chunks],
                      "quiz": quiz}
    return sets


def main() -> None:
    sets = {}
    for slug, data in character_sets().items():
        notes, questions = data["notes"], data["questions"]
        held = [(q, i) for i, asked in enumerate(questions) for q in asked[1::2]]
        sets[slug] = {"held back": (notes, [asked[::2] for asked in questions], held),
                      "quiz": (notes, questions, data["quiz"])}
    texts = sorted({t for by_set in sets.values() for notes, keys, asked in by_set.values()
                    for t in [*notes, *(q for ks in keys for q in ks), *(q for q, _ in asked)]})
    vectors = dict(zip(texts, embed_texts(texts).numpy(), strict=True))
    print("| variant | held back: first | among 3 | quiz: first | among 3 |")
    print("| --- | --- | --- | --- | --- |")
    for name, variant in VARIANTS.items():
        cells = []
        for which in ("held back", "quiz"):
            counted = [ranked_first(*by_set[which], vectors, variant) for by_set in sets.values()]
            total = sum(len(by_set[which][2]) for by_set in sets.values())
            cells += [f"{sum(f for f, _ in counted) / total:.3f}",
                      f"{sum(a for _, a in counted) / total:.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
