"""Suggestions that come with a problem: what was probably meant, or what to write instead."""

from __future__ import annotations

import difflib
import re
import unicodedata

from claw_tui.ollama.modelfile.model import INSTRUCTIONS, MESSAGE_ROLES, is_invisible
from claw_tui.ollama.parameters import (
    PARAMETERS,
)

_USAGE = {"parameter": "PARAMETER <name> <value>", "message": "MESSAGE <role> <text>", "from": "FROM <model>"}


def usage(keyword: str) -> str:
    return f"write `{_USAGE.get(keyword, keyword.upper() + ' <value>')}` on one line"


def describe_char(char: str) -> str:
    return f"U+{ord(char):04X} ({unicodedata.name(char, 'unnamed character')})"


def hint_for_bad_start(char: str) -> str | None:
    if is_invisible(char) or not char.isascii():
        return f"the line starts with {describe_char(char)}; delete it"
    if char == '"':
        return "a quoted value must follow an instruction on its line (did a value end early?)"
    return None


def hint_for_bad_follower(name: str, follower: str) -> str | None:
    if follower and (is_invisible(follower) or not follower.isascii()):
        return f"{describe_char(follower)} after {name} is not a space; use a plain space"
    return did_you_mean_instruction(name)


def did_you_mean_instruction(name: str) -> str | None:
    close = difflib.get_close_matches(name.lower(), INSTRUCTIONS, n=1, cutoff=0.6)
    return f"did you mean {close[0].upper()}?" if close else None


def hint_for_bad_name(token: str) -> str | None:
    if "=" in token or ":" in token:
        name = re.split(r"[=:]", token, maxsplit=1)[0]
        return f"write `PARAMETER {name} <value>`, with a space between the name and the value"
    repaired = token.replace("-", "_")
    if repaired in PARAMETERS:
        return f"did you mean '{repaired}'?"
    return "parameter names contain only letters, digits and _"


def hint_for_role(role: str) -> str | None:
    if role.lower() in MESSAGE_ROLES:
        return f"roles are lower case: did you mean '{role.lower()}'?"
    if role.rstrip(":").lower() in MESSAGE_ROLES:
        return f"write `MESSAGE {role.rstrip(':').lower()} <text>` (no colon)"
    close = difflib.get_close_matches(role.lower(), MESSAGE_ROLES, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "MESSAGE takes only system, user or assistant"
