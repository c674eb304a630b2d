"""Ollama Modelfiles: parse (collecting every problem), validate, write back, and turn into `/api/create` bodies.

The scanner follows Ollama's own parser (parser/parser.go) rune for rune where it matters:
- an instruction is a run of ASCII letters at the start of a line, then a space or tab, then a value;
- `#` starts a comment only where an instruction could start;
- a value runs to the end of the line and is trimmed; a value that starts with `"` or `\"\"\"` goes on, across
  lines, until a line break (or the end of the file) right after the closing quote; there are no escapes;
- characters that are neither printable nor blanks are dropped from values.
Unlike Ollama, which stops at the first problem, `parse` reports all of them.
"""
__all__ = [
    "Diagnostic",
    "LayoutLine",
    "Modelfile",
    "ModelfileError",
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
