"""Ollama Modelfiles: parse (collecting every problem), validate, write back, and turn into `/api/create` bodies.

The scanner follows Ollama's own parser (parser/parser.go) rune for rune where it matters:
- an instruction is a run of ASCII letters at the start of a line, then a space or tab, then a value;
- `#` starts a comment only where an instruction could start;
- a value runs to the end of the line and is trimmed; a value that starts with `"` or `\"\"\"` goes on, across
  lines, until a line break (or the end of the file) right after the closing quote; there are no escapes;
- characters that are neither printable nor blanks are dropped from values.
Unlike Ollama, which stops at the first problem, `parse` reports all of them.

The parts: `model` (the Modelfile and its constants), `scanner` and `parser`, `hints` (what to write instead),
`validate`, `serialize` (writing back, keeping the layout) and `api` (`/api/create` bodies, `/api/show` answers).
"""

from claw_tui.ollama.modelfile.api import from_show_response, replace_parameters, to_create_request
from claw_tui.ollama.modelfile.model import (
    INSTRUCTIONS,
    INVALID_COMMAND,
    INVALID_REQUIRES,
    INVALID_ROLE,
    MESSAGE_ROLES,
    MISSING_FROM,
    LayoutLine,
    Modelfile,
    ModelfileError,
    ParameterValue,
    ParseResult,
)
from claw_tui.ollama.modelfile.parser import check_text, parse
from claw_tui.ollama.modelfile.serialize import diff, is_representable, quote_value, serialize
from claw_tui.ollama.modelfile.validate import validate
from claw_tui.ollama.parameters import Diagnostic

__all__ = [
    "INSTRUCTIONS",
    "INVALID_COMMAND",
    "INVALID_REQUIRES",
    "INVALID_ROLE",
    "MESSAGE_ROLES",
    "MISSING_FROM",
    "Diagnostic",
    "LayoutLine",
    "Modelfile",
    "ModelfileError",
    "ParameterValue",
    "ParseResult",
    "check_text",
    "diff",
    "from_show_response",
    "is_representable",
    "parse",
    "quote_value",
    "replace_parameters",
    "serialize",
    "to_create_request",
    "validate",
]
