"""The agent form's options field and the Agents pane show an agent's options as the inside of a TOML inline table:
one line (an Input and a table cell hold one), which reads back as the same options."""

from __future__ import annotations

from claw_tui.ui.screens.agent_form import options_text, parse_options


def test_options_are_one_line_of_toml_that_reads_back():
    options = {"temperature": 0.2, "stop": ["</s>", "User:"], "num_ctx": 8192}
    text = options_text(options)
    assert text == 'temperature = 0.2, stop = ["</s>", "User:"], num_ctx = 8192'
    assert parse_options(text) == options
