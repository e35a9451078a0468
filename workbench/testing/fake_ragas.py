"""The fake endpoint's answers to ragas' test-set prompts (`TestsetGenerator`), valid and meaningful.

ragas' `PydanticPrompt` sends one user message: the instruction, the output schema, examples, then
`input: <the input model as JSON>` and `Output: `. With a JSON-schema `response_format` the fake server
asks `ragas_instance(schema, messages)` first: for the output models of the test-set pipeline (summary,
node filter score, themes, entities, personas, persona-theme mapping, concept combinations, query and
answer) it builds an answer from that input JSON, so the knowledge graph gets entities that overlap
between chunks and every query's answer is a sentence of its context. Any other schema gets None and
the server's generic `schema_instance`. Enough to drive the real library end to end; not its quality.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PHRASE = re.compile(r"\b[A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_STOP = {"The", "A", "An", "In", "On", "At", "It", "This", "That", "He", "She", "They", "As", "For", "With", "And",
         "But", "Of", "To", "By", "After", "Before", "During", "When", "While", "His", "Her", "Their", "Its"}


def prompt_input(messages: list[dict]) -> dict | None:
    """The JSON after ragas' last `input: ` line, or None when the message is not a ragas prompt."""
    text = next((m.get("content") for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    if not isinstance(text, str) or "\ninput: " not in text:
        return None
    raw = text.rsplit("\ninput: ", 1)[1].rsplit("\nOutput:", 1)[0]
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def phrases(text: str, limit: int = 10) -> list[str]:
    """Capitalised word runs in order of first occurrence (names, places, titles), leading stop words off."""
    out: list[str] = []
    for match in _PHRASE.finditer(text):
        words = match.group(0).split()
        while words and words[0] in _STOP:
            words = words[1:]
        phrase = " ".join(words)
        if phrase and phrase not in out:
            out.append(phrase)
        if len(out) >= limit:
            break
    return out or text.split()[:1]


def _sentence_with(context: str, terms: list[str]) -> str:
    sentences = [s for s in _SENTENCE.split(context.strip()) if s]
    for term in terms:
        hit = next((s for s in sentences if term.lower() in s.lower()), None)
        if hit:
            return hit
    return sentences[0] if sentences else context


def ragas_instance(schema: dict, messages: list[dict]) -> dict | None:
    """A reply valid for ragas' test-set output model `schema` (by its title), built from the prompt's input."""
    data = prompt_input(messages)
    title = schema.get("title") if isinstance(schema, dict) else None
    if data is None or not title:
        return None
    if title == "StringIO" and "text" in data:  # the summary (and title) extractors
        return {"text": " ".join(_SENTENCE.split(str(data["text"]).strip())[:2])}
    if title == "QuestionPotentialOutput":  # CustomNodeFilter: keep every chunk
        return {"score": 5}
    if title in ("ThemesAndConcepts", "NEROutput", "Keyphrases") and "text" in data:
        key = {"ThemesAndConcepts": "output", "NEROutput": "entities", "Keyphrases": "keyphrases"}[title]
        return {key: phrases(str(data["text"]), int(data.get("max_num") or 10))}
    if title == "Persona" and "text" in data:
        topic = (phrases(str(data["text"]), 1) or ["the text"])[0]
        return {"name": f"{topic} Researcher", "role_description": f"Studies {topic} and needs its facts right."}
    if title == "PersonaThemesMapping":
        themes = [str(t) for t in data.get("themes", [])]
        return {"mapping": {p["name"]: themes for p in data.get("personas", []) if isinstance(p, dict) and "name" in p}}
    if title == "ConceptCombinations":
        lists = [x for x in data.get("lists_of_concepts", []) if x]
        pairs = [[a[0], b[0]] for a, b in zip(lists, lists[1:])]
        return {"combinations": pairs[: int(data.get("max_combinations") or 5)] or [lists[0][:2]] if lists else []}
    if title == "GeneratedQueryAnswer":
        context = data.get("context", "")
        terms = [data["term"]] if "term" in data else [str(t) for t in data.get("themes", [])]
        parts = [re.sub(r"^<\d+-hop>\s*", "", c) for c in (context if isinstance(context, list) else [context])]
        answers = [_sentence_with(p, terms) for p in parts]
        about = " and ".join(terms[:2]) or "this"
        return {"query": f"What does the text say about {about}?", "answer": " ".join(answers)}
    return None
