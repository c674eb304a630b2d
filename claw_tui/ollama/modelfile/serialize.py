"""Writing a Modelfile back: quoting values Ollama reads back as written, keeping the layout (comments, order)
of what did not change, and the diff between two texts."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from claw_tui.ollama.modelfile.hints import describe_char
from claw_tui.ollama.modelfile.model import (
    BLANKS,
    LINE_BREAK,
    LINE_BREAKS,
    WHITESPACE,
    Modelfile,
    SlotKey,
    is_invisible,
)
from claw_tui.ollama.parameters import (
    format_value,
)


def quote_value(value: str) -> str:
    """A value as written on an instruction line, quoted the way `ollama show --modelfile` does.

    Beyond Ollama's rule (quote when there is a line break or a leading/trailing space; `\"\"\"` when the value
    also contains `"`), an empty value, a value starting with `"` and one with a leading/trailing tab are
    quoted too, or they would read back differently.
    """
    needs_quotes = (
        value == ""
        or any(c in value for c in LINE_BREAKS)
        or value[0] in WHITESPACE
        or value[-1] in WHITESPACE
        or value.startswith('"')
    )
    if not needs_quotes:
        return value
    if '"' in value:
        return f'"""{value}"""'
    return f'"{value}"'


def is_representable(value: str) -> bool:
    """Whether `value` reads back unchanged once written with quote_value (see why_unrepresentable)."""
    return why_unrepresentable(value) is None


def why_unrepresentable(value: str) -> str | None:
    invisible = next((c for c in value if is_invisible(c)), None)
    if invisible is not None:
        return f"Ollama drops {describe_char(invisible)} from Modelfile values"
    if not quote_value(value).startswith('"""'):
        return None
    # Inside \"\"\"...\"\"\" the value ends at the first line break that follows \"\"\" (blanks between allowed).
    last_visible = -1
    for pos, char in enumerate(value):
        if char in LINE_BREAKS:
            if last_visible >= 2 and value.startswith('"""', last_visible - 2):
                return 'a Modelfile value cannot contain """ at the end of a line'
        elif char not in BLANKS:
            last_visible = pos
    return None


def serialize(modelfile: Modelfile, *, keep_layout: bool = True) -> str:
    """Modelfile text in the style of `ollama show --modelfile`.

    With keep_layout (the default) a Modelfile that came from `parse` keeps its comments, blank lines, order and
    the original text of every unchanged instruction; new values go after the last line of their kind.
    Raises ValueError for a value that cannot be written (see is_representable).
    """
    keys = _slot_keys(modelfile)
    if keep_layout and modelfile.layout:
        lines = _lines_following_layout(modelfile, keys)
    else:
        lines = [_instruction_line(modelfile, key) for key in keys]
    return "\n".join(lines) + "\n"


_KIND_ORDER = ("from", "requires", "adapter", "template", "system", "parameter", "license", "message")


def _slot_keys(modelfile: Modelfile) -> list[SlotKey]:
    """Every value of the Modelfile, one key per instruction line, in `ollama show` order."""
    keys: list[SlotKey] = [("from",)]
    if modelfile.requires is not None:
        keys.append(("requires",))
    keys.extend(("adapter", index) for index in range(len(modelfile.adapters)))
    if modelfile.template is not None:
        keys.append(("template",))
    if modelfile.system is not None:
        keys.append(("system",))
    for name, value in modelfile.parameters.items():
        if isinstance(value, list):
            keys.extend(("parameter", name, index) for index in range(len(value)))
        else:
            keys.append(("parameter", name))
    keys.extend(("license", index) for index in range(len(modelfile.license)))
    keys.extend(("message", index) for index in range(len(modelfile.messages)))
    return keys


def _instruction_line(modelfile: Modelfile, key: SlotKey) -> str:
    value = slot_value(modelfile, key)
    kind = key[0]
    if kind == "parameter":
        label = f"PARAMETER {key[1]}"
        return f"{label} {_quoted(format_value(key[1], value), label)}"
    if kind == "message":
        role, content = value
        return f"MESSAGE {role} {_quoted(content, 'MESSAGE')}"
    label = kind.upper()
    return f"{label} {_quoted(value, label)}"


def _quoted(value: str, label: str) -> str:
    reason = why_unrepresentable(value)
    if reason is not None:
        raise ValueError(f"{label}: {reason}")
    return quote_value(value)


_MISSING = object()


def slot_value(modelfile: Modelfile, key: SlotKey) -> Any:
    """The current value a slot key points at, or _MISSING."""
    kind = key[0]
    if kind in ("from", "template", "system", "requires"):
        value = modelfile.from_ if kind == "from" else getattr(modelfile, kind)
        return _MISSING if value is None else value
    if kind in ("adapter", "license", "message"):
        lists: dict[str, Sequence[object]] = {
            "adapter": modelfile.adapters,
            "license": modelfile.license,
            "message": modelfile.messages,
        }
        values = lists[kind]
        return values[key[1]] if key[1] < len(values) else _MISSING
    value = modelfile.parameters.get(key[1], _MISSING)
    if len(key) == 3:
        return value[key[2]] if isinstance(value, list) and key[2] < len(value) else _MISSING
    return value


def _same_value(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _lines_following_layout(modelfile: Modelfile, keys: list[SlotKey]) -> list[str]:
    wanted = set(keys)
    placed: list[tuple[SlotKey | None, str]] = []
    for line in modelfile.layout:
        if line.kind != "slot":
            placed.append((None, line.text if line.kind == "comment" else ""))
        elif line.key in wanted:
            unchanged = _same_value(slot_value(modelfile, line.key), line.snapshot)
            placed.append((line.key, line.text if unchanged else _instruction_line(modelfile, line.key)))
    placed_keys = {key for key, _ in placed}
    for key in keys:
        if key not in placed_keys:
            placed.insert(_insertion_index(placed, key), (key, _instruction_line(modelfile, key)))
    return [text for _, text in placed]


def _insertion_index(placed: list[tuple[SlotKey | None, str]], key: SlotKey) -> int:
    """After the last line of the same kind, else after the last of an earlier kind, else before the first."""
    rank = _KIND_ORDER.index(key[0])
    ranks = [None if k is None else _KIND_ORDER.index(k[0]) for k, _ in placed]
    for same_kind in (True, False):
        for index in range(len(placed) - 1, -1, -1):
            r = ranks[index]
            if r is not None and (r == rank if same_kind else r < rank):
                return index + 1
    return next((index for index, r in enumerate(ranks) if r is not None), len(placed))


def _split_lines(text: str) -> list[str]:
    lines = LINE_BREAK.split(text)
    if lines[-1] == "":
        lines.pop()
    return lines


def diff(a_text: str, b_text: str, *, a_label: str = "current", b_label: str = "edited", context: int = 3) -> list[str]:
    """Unified diff lines (without line ends) from a_text to b_text."""
    return list(
        difflib.unified_diff(
            _split_lines(a_text), _split_lines(b_text), fromfile=a_label, tofile=b_label, n=context, lineterm=""
        )
    )
