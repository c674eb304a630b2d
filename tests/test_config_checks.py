"""Agent options and the theme are checked when the config loads: `claw config show` and `claw doctor` refuse what
every chat to the agent (or the console's theme) would otherwise trip over, naming file, line and key."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from textual.theme import BUILTIN_THEMES

from claw_tui import cli
from claw_tui.theme_files import TEXTUAL_THEMES, claw_theme_names
from claw_tui.ui.themes import load_themes
from tests.test_doctor import doctor, write_config


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def config_show_error(capsys, path: Path) -> str:
    assert cli.main(["--config", str(path), "config", "show"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


@pytest.mark.parametrize(
    ("options", "line", "message"),
    [
        (
            'options = { temperature = "hot" }',
            4,
            'agents[0].options.temperature: expected a number, got a string ("hot") (e.g. temperature = 0.8)',
        ),
        ("options = { num_ctx = 8192.5 }", 4, "agents[0].options.num_ctx: expected an integer, got a float (8192.5)"),
        ("options = { num_ctx = 8192.0 }", 4, "agents[0].options.num_ctx: expected an integer, got a float (8192.0)"),
        (
            'options = { use_mmap = "yes" }',
            4,
            'agents[0].options.use_mmap: expected true or false, got a string ("yes")',
        ),
        ('options = { stop = "###" }', 4, 'agents[0].options.stop: expected an array of strings, got a string ("###")'),
        ("options = { temperature = inf }", 4, 'agents[0].options.temperature: option "temperature" must be a finite'),
        (
            "options = { temprature = 0.2 }",
            4,
            "agents[0].options.temprature: unknown Ollama option 'temprature' (did you mean 'temperature'?)",
        ),
        (
            "options = { max_tokens = 100 }",
            4,
            "agents[0].options.max_tokens: unknown Ollama option 'max_tokens' (did you mean 'num_predict'?)",
        ),
        ("options = { mirostat = 1 }", 4, "agents[0].options.mirostat: 'mirostat' is a deprecated Ollama option"),
        ("[agents.options]\ntop_k = 1.5", 5, "agents[0].options.top_k: expected an integer, got a float (1.5)"),
    ],
)
def test_agent_options_must_be_ollama_parameters_of_their_type(tmp_path, capsys, options, line, message):
    path = config_file(tmp_path, f'[[agents]]\nname = "pirate"\nmodel = "qwen3:8b"\n{options}\n')
    assert config_show_error(capsys, path).startswith(f"claw: config error: {path}:{line}: {message}")


def test_good_agent_options_load(tmp_path, capsys):
    path = config_file(
        tmp_path,
        """
        [[agents]]
        name = "pirate"
        model = "qwen3:8b"
        options = { temperature = 1, num_ctx = 8192, stop = ["###"], use_mmap = false, top_p = 0.5 }
        """,
    )
    assert cli.main(["--config", str(path), "config", "show", "--json"]) == 0
    [agent] = json.loads(capsys.readouterr().out)["agents"]
    assert agent["options"] == {"temperature": 1, "num_ctx": 8192, "stop": ["###"], "use_mmap": False, "top_p": 0.5}


def test_an_unknown_theme_names_the_line_and_the_themes(tmp_path, capsys):
    path = config_file(tmp_path, '[gateway]\nlisten = ":1"\n[ui]\nrefresh_hz = 2\ntheme = "nope"\n')
    error = config_show_error(capsys, path)
    assert error.startswith(f"claw: config error: {path}:5: ui.theme: unknown theme 'nope': the themes folder (")
    assert "claw-dark, claw-high-contrast, claw-light" in error

    path = config_file(tmp_path, '[ui]\ntheme = "claw-drak"\n')
    assert "unknown theme 'claw-drak' (did you mean 'claw-dark'?)" in config_show_error(capsys, path)


@pytest.mark.parametrize("theme", ["claw-light", "claw-high-contrast", "nord", "textual-dark"])
def test_claw_and_textual_themes_load(tmp_path, capsys, theme):
    path = config_file(tmp_path, f'[ui]\ntheme = "{theme}"\n')
    assert cli.main(["--config", str(path), "config", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ui"]["theme"] == theme


def test_the_theme_names_are_those_the_console_offers():
    assert set(TEXTUAL_THEMES) == set(BUILTIN_THEMES)
    assert claw_theme_names() == [theme.name for theme in load_themes()]
    assert {"claw-dark", "claw-light", "claw-high-contrast"} <= set(claw_theme_names())


def test_doctor_fails_on_bad_options_and_theme(tmp_path):
    config = write_config(
        tmp_path,
        "http://127.0.0.1:9",
        extra='[ui]\ntheme = "nope"\n[[agents]]\nname = "pirate"\nmodel = "qwen3:8b"\noptions = {temperature = "hot"}',
    )
    code, checks, _ = doctor(config)
    assert code == 1
    assert checks["config"]["status"] == "fail" and f"{config}:" in checks["config"]["detail"]

    config.write_text(config.read_text().replace('theme = "nope"', 'theme = "claw-light"'))
    code, checks, _ = doctor(config)
    assert checks["config"]["status"] == "fail"
    assert "agents[0].options.temperature: expected a number" in checks["config"]["detail"]
