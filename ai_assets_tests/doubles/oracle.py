"""Deterministic oracles for the loopback Messages API server.

An oracle turns one Messages API request into the model's answer: a dict (the input of the
forced tool) or a string (a text block). `LabelOracle`, the default, knows a mapping from
customer text to label (BANKING77, say), finds the known text inside the prompt, and answers
that label — or, with the server's error rate, a deterministic wrong one: whether a text is
answered wrongly, and with which label, depends only on the seed and the text, so the same
request always gets the same answer, in any order, on any server.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

OUT_OF_SCOPE = "out_of_scope"


def unit_hash(*parts: object) -> float:
    """A number in [0, 1) that depends only on `parts`: the server's one source of chance."""
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def short_hash(*parts: object, n: int = 24) -> str:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:n]


_WS = re.compile(r"\s+")


def text_key(text: str) -> str:
    """The form texts are compared in: NFKC, invisible characters dropped, whitespace
    collapsed, case folded — so the project's normalised text still finds its source row."""
    if text.isascii() and text.isprintable():
        return " ".join(text.split()).casefold()
    text = unicodedata.normalize("NFKC", _WS.sub(" ", text))
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))
    return _WS.sub(" ", text).strip().casefold()


@dataclass(frozen=True)
class OracleRequest:
    """What an oracle sees of one request (a /v1/messages call or one batch item)."""

    body: Mapping[str, Any]
    user_text: str  # the text of the last user message (text blocks joined by newlines)
    tool: Mapping[str, Any] | None  # the tool the request forces (tool_choice tool/any), if any
    label_field: str | None  # the tool input property that carries the label ("intent")
    allowed_labels: tuple[str, ...] | None  # that property's enum, when the schema has one
    error_rate: float  # the server's current error rate
    seed: int
    batch: bool = False


OracleAnswer = Mapping[str, Any] | str
Oracle = Callable[[OracleRequest], OracleAnswer]


def user_text_of(body: Mapping[str, Any]) -> str:
    """The text of the last user message: a string content, or its text blocks joined."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(
                    str(b.get("text", "")) for b in content
                    if isinstance(b, Mapping) and b.get("type") == "text")
            return ""
    return ""


def forced_tool(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The tool a request makes the model call: tool_choice {type: tool, name} or {type: any}."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, Mapping)]
    choice = body.get("tool_choice")
    if not tools or not isinstance(choice, Mapping):
        return None
    if choice.get("type") == "tool":
        return next((t for t in tools if t.get("name") == choice.get("name")), None)
    if choice.get("type") == "any":
        return tools[0]
    return None


def label_field_of(tool: Mapping[str, Any] | None) -> tuple[str | None, tuple[str, ...] | None]:
    """The property carrying the label and its enum: `intent` if present, else the first
    property with an enum."""
    if tool is None:
        return None, None
    props = (tool.get("input_schema") or {}).get("properties") or {}
    candidates = (["intent"] if "intent" in props else []) + [p for p in props if p != "intent"]
    for name in candidates:
        enum = props[name].get("enum") if isinstance(props[name], Mapping) else None
        if isinstance(enum, list) and enum:
            return name, tuple(str(v) for v in enum)
    return ("intent" if "intent" in props else None), None


def _default_for(schema: Mapping[str, Any]) -> Any:
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    return {"string": "", "number": 0.5, "integer": 0, "boolean": False,
            "array": [], "object": {}}.get(kind)


def shape_tool_input(tool: Mapping[str, Any], label_field: str | None,
                     values: Mapping[str, Any]) -> dict[str, Any]:
    """Fill the tool's input_schema from `values`: known properties get their value, the label
    property gets `values["intent"]`, other required properties a default of their type, and
    nothing outside the schema is added (unless the schema lists no properties at all)."""
    schema = tool.get("input_schema") or {}
    props = schema.get("properties")
    if not isinstance(props, Mapping) or not props:
        return dict(values)
    required = set(schema.get("required") or [])
    out: dict[str, Any] = {}
    for name, prop in props.items():
        if name == label_field:
            out[name] = values.get("intent")
        elif name in values:
            out[name] = values[name]
        elif name in required:
            out[name] = _default_for(prop if isinstance(prop, Mapping) else {})
    return out


@dataclass(frozen=True)
class LabelVerdict:
    label: str  # what the oracle answers
    true_label: str  # what the mapping says (or the unknown label)
    wrong: bool  # answered a deliberately different label
    known: bool  # the text was found in the mapping
    key: str  # the hashed key (normalised known text, or the whole prompt)
    confidence: float


_TAGGED = re.compile(r"<([A-Za-z_][\w\-]*)[^>]*>(.*?)</\1\s*>", re.S)
_QUOTED = re.compile(r'"""(.*?)"""|```(.*?)```|\'\'\'(.*?)\'\'\'|"([^"\n]+)"|\u201c([^\u201d]+)\u201d', re.S)


def _candidates(prompt: str) -> Iterable[str]:
    yield prompt
    unescaped = html.unescape(prompt)
    yield unescaped
    for m in _TAGGED.finditer(prompt):
        yield html.unescape(m.group(2))
    for m in _QUOTED.finditer(unescaped):
        yield next(g for g in m.groups() if g is not None)
    yield from unescaped.splitlines()


LabelSource = Mapping[str, str] | Iterable[Any] | Callable[[str], str | None] | None


class LabelOracle:
    """Answers the label of the known text found in the user message.

    `labels` is a mapping text → label, an iterable of (text, label) pairs or of objects with
    `.text` and `.category` (the project's `LabelledText`), or a callable user text → label or
    None. Texts are matched after `text_key` normalisation: the whole message, the content of
    any <tag>…</tag> block (HTML-unescaped), quoted spans, single lines, and finally the longest
    known text contained anywhere in the message.

    Answer: a label from the tool's enum when the schema has one. With probability
    `error_rate` (per text, from a hash of seed and text) it is a different allowed label,
    itself picked by hash. Unknown texts get `unknown_label` (when allowed). Confidence is a
    hash-derived number in `confidence` (right answers) or `wrong_confidence` (wrong ones).
    """

    def __init__(self, labels: LabelSource = None, *, unknown_label: str = OUT_OF_SCOPE,
                 confidence: tuple[float, float] = (0.80, 0.99),
                 wrong_confidence: tuple[float, float] = (0.50, 0.95),
                 summary: Callable[[str, str], str] | None = None,
                 min_substring_chars: int = 8):
        self._fn: Callable[[str], str | None] | None = None
        self._map: dict[str, str] = {}
        if callable(labels) and not isinstance(labels, Mapping):
            self._fn = labels
        elif isinstance(labels, Mapping):
            self._map = {text_key(t): str(label) for t, label in labels.items()}
        elif labels is not None:
            for row in labels:
                text, label = (row.text, row.category) if hasattr(row, "category") else row
                self._map.setdefault(text_key(text), str(label))
        self.unknown_label = unknown_label
        self.confidence = confidence
        self.wrong_confidence = wrong_confidence
        self.summary = summary or (lambda label, text: f"Customer message about {label.replace('_', ' ')}.")
        self._by_length = sorted((k for k in self._map if len(k) >= min_substring_chars),
                                 key=lambda k: (-len(k), k))
        self.all_labels: tuple[str, ...] = tuple(sorted(set(self._map.values()) | {unknown_label}))
        self._lookup = lru_cache(maxsize=65536)(self._lookup_uncached)

    def __len__(self) -> int:
        return len(self._map)

    def _lookup_uncached(self, prompt: str) -> tuple[str, str | None]:
        """(key, true label or None) for a user text."""
        if self._fn is not None:
            return text_key(prompt), self._fn(prompt)
        for candidate in _candidates(prompt):
            key = text_key(candidate)
            if key in self._map:
                return key, self._map[key]
        haystack = text_key(html.unescape(prompt))
        for key in self._by_length:  # longest first: the first hit is the best
            if len(key) <= len(haystack) and key in haystack:
                return key, self._map[key]
        return text_key(prompt), None

    def true_label(self, user_text: str) -> str | None:
        return self._lookup(user_text)[1]

    def decide(self, user_text: str, allowed: Iterable[str] | None = None,
               error_rate: float = 0.0, seed: int = 0) -> LabelVerdict:
        """The oracle's answer for a user text: what the server will send, predictable by tests."""
        key, true = self._lookup(user_text)
        known = true is not None
        true = true if known else self.unknown_label
        allowed_list = list(dict.fromkeys(allowed)) if allowed else list(self.all_labels)
        label = true
        if label not in allowed_list:
            label = (self.unknown_label if self.unknown_label in allowed_list
                     else allowed_list[int(unit_hash(seed, "fallback", key) * len(allowed_list))])
        wrong = False
        others = [other for other in allowed_list if other != label]
        if error_rate > 0 and others and unit_hash(seed, "wrong", key) < error_rate:
            label = others[int(unit_hash(seed, "wrong-label", key) * len(others))]
            wrong = True
        lo, hi = self.wrong_confidence if wrong else self.confidence
        confidence = round(lo + (hi - lo) * unit_hash(seed, "confidence", key), 3)
        return LabelVerdict(label, true, wrong, known, key, confidence)

    def __call__(self, request: OracleRequest) -> OracleAnswer:
        d = self.decide(request.user_text, request.allowed_labels, request.error_rate, request.seed)
        if request.tool is None:
            return d.label
        values = {"intent": d.label, "confidence": d.confidence,
                  "summary": self.summary(d.label, request.user_text)}
        return shape_tool_input(request.tool, request.label_field, values)


def banking77_labels() -> dict[str, str]:
    """The shipped BANKING77 rows as text → category (imported lazily)."""
    from ai_assets.data.datasets import load_banking77

    return {row.text: row.category for row in load_banking77()}


def estimate_tokens(obj: object, chars_per_token: float = 4.0) -> int:
    """Deterministic token count: characters of the compact JSON (or the string) / 4, at least 1."""
    text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return max(1, math.ceil(len(text) / chars_per_token))
