"""Deterministic answers for the simulated models, split into word-piece tokens.

The same (seed, model, prompt, temperature, option seed) always gives the same answer. Answers are plausible
English Markdown about the prompt's topic: a few paragraphs, sometimes a list or a code block. Token counts of
prompts follow the usual ~4 characters per token rule.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_TOKEN_RE = re.compile(r"\n|[ ]?[A-Za-z]+|[ ]?[0-9]{1,3}|[ ]+(?=[ \n])|[ ]?[^A-Za-z0-9\s]|\s")
_MAX_WORD_PIECE = 5

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "else",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "into",
        "onto",
        "about",
        "above",
        "below",
        "over",
        "under",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "having",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "not",
        "no",
        "yes",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "i",
        "me",
        "my",
        "you",
        "your",
        "we",
        "our",
        "they",
        "them",
        "their",
        "he",
        "she",
        "his",
        "her",
        "him",
        "us",
        "please",
        "tell",
        "explain",
        "describe",
        "give",
        "write",
        "show",
        "make",
        "let",
        "some",
        "any",
        "all",
        "each",
        "every",
        "more",
        "most",
        "other",
        "such",
        "only",
        "own",
        "same",
        "so",
        "than",
        "too",
        "very",
        "just",
        "also",
        "as",
        "out",
        "up",
        "down",
        "off",
        "again",
        "further",
        "once",
        "both",
        "few",
        "many",
        "much",
        "like",
        "want",
        "need",
        "know",
        "use",
        "using",
        "used",
        "get",
        "got",
        "one",
        "two",
        "three",
        "brief",
        "short",
        "answer",
        "question",
        "detail",
        "detailed",
        "essay",
        "concise",
        "thorough",
        "sentence",
        "word",
        "quick",
        "quickly",
        "example",
    ]
)

TECH_TERMS = (
    "latency",
    "throughput",
    "the cache",
    "memory bandwidth",
    "batch size",
    "the scheduler",
    "context length",
    "the power budget",
    "quantization",
    "the KV cache",
    "concurrency",
    "tail latency",
    "energy per token",
    "clock speed",
    "the request queue",
    "warm-up",
    "load balancing",
    "back-pressure",
    "observability",
)
ADJECTIVES = (
    "simple",
    "practical",
    "reliable",
    "efficient",
    "careful",
    "measurable",
    "predictable",
    "robust",
    "incremental",
    "explicit",
    "small",
    "well-tested",
)
OPENINGS = (
    "Here is a short overview of {topic}.",
    "Good question: {topic} comes down to a few ideas.",
    "In short, {topic} is about trade-offs.",
    "Let's break {topic} down step by step.",
    "{Topic} is easier to reason about once you separate the moving parts.",
)
SENTENCES = (
    "The first thing to look at is {term}, because it sets the limits for everything else.",
    "A {adj} approach is to measure before changing anything, then change one thing at a time.",
    "Most problems with {topic} show up as {term} long before they become failures.",
    "If {term} grows, {topic} usually gets slower rather than breaking outright.",
    "It helps to keep the design {adj}, so that each part can be tested on its own.",
    "In practice, {term} and {term2} pull in opposite directions, and the right balance depends on the workload.",
    "A common mistake is to tune {term} without looking at {term2}.",
    "The numbers matter more than intuition here: record a baseline and compare against it.",
    "For {topic}, a {adj} default works well for most people, and the edge cases can be handled later.",
    "Think of {term} as a budget: every feature spends some of it.",
    "When in doubt, start with the {adj} option and only add complexity when a measurement asks for it.",
    "This is also why {term2} deserves a place on the dashboard next to {term}.",
    "The result is a system that behaves the same way under load as it does in a quick test.",
    "Small, {adj} steps make it much easier to see which change actually helped.",
)
CLOSINGS = (
    "Let me know if you want a deeper dive into any of these points.",
    "I hope this helps; happy to go into more detail.",
    "If you share more about your setup, I can make this more specific.",
    "That should be enough to get started.",
)
LIST_INTROS = ("Key points:", "A quick checklist:", "The main steps are:", "Things to keep in mind:")
LIST_ITEMS = (
    "**{Term}**: keep an eye on it and set an alert.",
    "**Measure first**: record {term} before and after each change.",
    "**Keep it {adj}**: fewer moving parts means fewer surprises.",
    "**{Term2}**: check it under realistic load, not just in a quick test.",
    "**Automate it**: a script beats a checklist that nobody reads.",
    "**Document the defaults** so the next person knows why they were chosen.",
)
THOUGHTS = (
    "Okay, the user is asking about {topic}.",
    "Let me think about what matters most here.",
    "I should mention {term} and probably {term2} as well.",
    "Maybe a short list would make this clearer.",
    "I need to keep the answer focused and practical.",
    "Let me also consider whether an example would help.",
    "Right, I think I have a good structure for the answer.",
)
GREETINGS = ("hi", "hello", "hey", "hiya", "howdy")
CODE_WORDS = ("code", "python", "function", "script", "program", "snippet", "implement", "example", "class")
SHORT_WORDS = ("brief", "briefly", "short", "concise", "one sentence", "one word", "tl;dr", "in a sentence")
LONG_WORDS = ("detail", "detailed", "essay", "in depth", "in-depth", "step by step", "thorough", "comprehensive")


@dataclass(frozen=True, slots=True)
class Answer:
    """A generated answer: optional thinking tokens, then content tokens."""

    thinking: tuple[str, ...]
    content: tuple[str, ...]

    @property
    def tokens(self) -> int:
        return len(self.thinking) + len(self.content)


def split_tokens(text: str) -> list[str]:
    """Split text into word-piece tokens whose concatenation is exactly the text."""
    tokens: list[str] = []
    for piece in _TOKEN_RE.findall(text):
        core = piece.lstrip(" ")
        if len(core) > _MAX_WORD_PIECE + 1 and core.isalpha():
            lead = piece[: len(piece) - len(core)]
            first = _MAX_WORD_PIECE - 1 if lead else _MAX_WORD_PIECE
            tokens.append(lead + core[:first])
            rest = core[first:]
            tokens.extend(rest[i : i + _MAX_WORD_PIECE] for i in range(0, len(rest), _MAX_WORD_PIECE))
        else:
            tokens.append(piece)
    return tokens


def count_tokens(text: str) -> int:
    """The ~4 characters per token rule, at least one token for any non-empty text."""
    return math.ceil(len(text) / 4) if text else 0


def count_chat_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Prompt tokens of a chat: content plus ~4 tokens of template per message and 3 to open the answer."""
    total = 3
    for message in messages:
        total += 4 + count_tokens(message_text(message))
        total += 576 * len(message.get("images") or [])
    return total


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def make_rng(*parts: Any) -> random.Random:
    digest = hashlib.sha256("\x1f".join(repr(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def generate_answer(
    prompt: str,
    *,
    seed: int,
    model: str,
    temperature: float = 0.8,
    option_seed: int | None = None,
    think: bool | str = False,
    response_format: Any = None,
    exact_tokens: int | None = None,
    context: str = "",
) -> Answer:
    """The deterministic answer to a prompt (the topic comes from it; `context`, e.g. the whole conversation,
    only varies the wording); `exact_tokens` forces the content length (for benchmarks)."""
    rng = make_rng("answer", seed, model, prompt, context, round(float(temperature), 4), option_seed)
    topic = extract_topic(prompt)
    words = _Words(rng, topic, related_terms(prompt))
    thinking: tuple[str, ...] = ()
    if think:
        thinking = tuple(split_tokens(_thinking_text(rng, words, think)))
    if response_format:
        content = _json_answer(rng, words, response_format)
    elif exact_tokens is None and _is_greeting(prompt):
        content = "Hello! How can I help you today?"
    else:
        target = exact_tokens if exact_tokens is not None else _target_length(rng, prompt)
        content = _markdown_answer(rng, words, prompt, target)
    tokens = split_tokens(content)
    if exact_tokens is not None:
        tokens = _fit_length(tokens, exact_tokens, rng, words)
    return Answer(thinking=thinking, content=tuple(tokens))


def extract_topic(prompt: str) -> str:
    words = re.findall(r"[A-Za-z][A-Za-z0-9+#.-]*", prompt)
    keywords = [w.strip(".-").lower() for w in words if len(w) >= 3 and w.lower().strip(".-") not in STOPWORDS]
    if not keywords:
        return "this"
    seen: dict[str, int] = {}
    for word in keywords:
        seen[word] = seen.get(word, 0) + 1
    ranked = sorted(seen, key=lambda w: (-seen[w], keywords.index(w)))
    return " ".join(sorted(ranked[:2], key=keywords.index))


def related_terms(prompt: str) -> list[str]:
    words = re.findall(r"[A-Za-z][A-Za-z-]{4,}", prompt.lower())
    return [w for w in dict.fromkeys(words) if w not in STOPWORDS][:6]


def embedding_vector(text: str, dimensions: int, *, model: str, seed: int = 0) -> list[float]:
    """A unit vector: hashed word features (so similar texts are close) plus a small text-specific part."""
    vector = [0.0] * dimensions
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        digest = hashlib.blake2b(f"{model}:{word}".encode(), digest_size=32).digest()
        for i in range(0, 32, 4):
            index, sign = struct.unpack_from("<HH", digest, i)
            vector[index % dimensions] += 1.0 if sign & 1 else -1.0
    rng = make_rng("embed", seed, model, text)
    for i in range(dimensions):
        vector[i] += rng.gauss(0.0, 0.15)
    return normalize(vector)


def normalize(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class _Words:
    def __init__(self, rng: random.Random, topic: str, related: list[str]) -> None:
        self.rng = rng
        self.topic = topic
        self.terms = list(TECH_TERMS) + [w for w in related if w not in topic.split()]

    def fill(self, template: str) -> str:
        term, term2 = self.rng.sample(self.terms, 2)
        text = template.format(
            topic=self.topic,
            Topic=_capitalize(self.topic),
            term=term,
            term2=term2,
            Term=_capitalize(term),
            Term2=_capitalize(term2),
            adj=self.rng.choice(ADJECTIVES),
        )
        return text


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _is_greeting(prompt: str) -> bool:
    words = re.findall(r"[a-z]+", prompt.lower())
    return 0 < len(words) <= 3 and words[0] in GREETINGS


def _target_length(rng: random.Random, prompt: str) -> int:
    lowered = prompt.lower()
    if any(word in lowered for word in SHORT_WORDS):
        return rng.randint(12, 40)
    if any(word in lowered for word in LONG_WORDS):
        return rng.randint(250, 600)
    return rng.randint(40, 260)


def _markdown_answer(rng: random.Random, words: _Words, prompt: str, target: int) -> str:
    wants_code = any(word in prompt.lower() for word in CODE_WORDS)
    blocks: list[str] = []
    paragraph = [words.fill(rng.choice(OPENINGS))]
    used = count_tokens(paragraph[0])
    extras_done = False
    while used < target:
        if len(paragraph) >= rng.randint(2, 4):
            blocks.append(" ".join(paragraph))
            paragraph = []
            if not extras_done and target - used > 40:
                extras_done = True
                extra = (
                    _code_block(rng, words)
                    if wants_code or rng.random() < 0.15
                    else (_bullet_list(rng, words) if rng.random() < 0.5 else "")
                )
                if extra:
                    blocks.append(extra)
                    used += len(split_tokens(extra))
                    continue
        sentence = words.fill(rng.choice(SENTENCES))
        paragraph.append(sentence)
        used += len(split_tokens(sentence)) + 1
    if paragraph:
        blocks.append(" ".join(paragraph))
    if target > 60 and rng.random() < 0.5:
        blocks.append(rng.choice(CLOSINGS))
    return "\n\n".join(blocks)


def _bullet_list(rng: random.Random, words: _Words) -> str:
    items = rng.sample(LIST_ITEMS, rng.randint(3, 5))
    return rng.choice(LIST_INTROS) + "\n\n" + "\n".join("- " + words.fill(item) for item in items)


def _code_block(rng: random.Random, words: _Words) -> str:
    name = re.sub(r"[^a-z0-9]+", "_", words.topic.lower()).strip("_") or "example"
    limit = rng.choice((4, 8, 16, 32))
    return (
        "For example:\n\n```python\n"
        f"def measure_{name}(samples: list[float], limit: float = {limit}.0) -> dict:\n"
        '    """Summarise the samples and flag the ones above the limit."""\n'
        "    over = [s for s in samples if s > limit]\n"
        "    mean = sum(samples) / len(samples) if samples else 0.0\n"
        '    return {"mean": mean, "over_limit": len(over), "count": len(samples)}\n'
        "```"
    )


def _thinking_text(rng: random.Random, words: _Words, level: bool | str) -> str:
    count = {"low": 2, "medium": 4, "high": 7}.get(level if isinstance(level, str) else "", 4)
    picks = [THOUGHTS[0]] + rng.sample(THOUGHTS[1:], min(count, len(THOUGHTS) - 1))
    return " ".join(words.fill(p) for p in picks)


def _json_answer(rng: random.Random, words: _Words, response_format: Any) -> str:
    properties = response_format.get("properties") if isinstance(response_format, dict) else None
    if isinstance(properties, dict) and properties:
        value = {key: _json_value(rng, words, schema) for key, schema in properties.items()}
    else:
        value = {"answer": words.fill(rng.choice(SENTENCES)), "confidence": round(rng.uniform(0.6, 0.99), 2)}
    return json.dumps(value, indent=2)


def _json_value(rng: random.Random, words: _Words, schema: Any) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "array":
        return [_json_value(rng, words, schema.get("items", {})) for _ in range(rng.randint(1, 3))]
    if kind == "object":
        props = schema.get("properties") or {}
        return {key: _json_value(rng, words, sub) for key, sub in props.items()}
    if isinstance(schema, dict) and schema.get("enum"):
        return rng.choice(schema["enum"])
    return words.fill(rng.choice(SENTENCES))


def _fit_length(tokens: list[str], exact: int, rng: random.Random, words: _Words) -> list[str]:
    while len(tokens) < exact:
        tokens.extend(split_tokens(" " + words.fill(rng.choice(SENTENCES))))
    return tokens[:exact]
