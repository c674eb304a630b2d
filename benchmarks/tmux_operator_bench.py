"""The console as an operator meets it, measured in a real terminal (tmux): first frame, pane switches, idle CPU, RSS.

Every number comes with a baseline measured in the same run the same way: a minimal Textual app (a header, five
tabs with a line of text each, a footer) started and driven in the same tmux. So the ratios say what claw costs on
top of Textual itself on this machine, whatever the machine.

    python benchmarks/tmux_operator_bench.py [--rounds 5] [--idle-seconds 10] [--json OUT.json]

Quality bars (SPEC): first frame < 1 s; < 3% of a core when idle at 4 Hz refresh.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_tmux_operator import Tmux, claw_command

BASELINE_APP = textwrap.dedent("""
    from textual.app import App
    from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

    class Baseline(App):
        BINDINGS = [(f"f{i}", f"show('p{i}')", f"Pane {i}") for i in range(1, 6)]

        def compose(self):
            yield Header()
            with TabbedContent(id="tabs"):
                for i in range(1, 6):
                    with TabPane(f"F{i} Pane{i}", id=f"p{i}"):
                        yield Static(f"content of pane {i}")
            yield Footer()

        def on_mount(self):
            self.set_interval(0.25, self.tick)

        def tick(self):
            self.sub_title = "idle tick"

        def action_show(self, pane):
            self.query_one("#tabs").active = pane

    Baseline().run()
""")

CLAW_PANES = (("F5", "status: all"), ("F3", "PARAMETER"), ("F4", "coder"), ("F2", "Ask something"), ("F1", "power"))
BASELINE_PANES = (
    ("F5", "content of pane 5"),
    ("F3", "content of pane 3"),
    ("F4", "content of pane 4"),
    ("F2", "content of pane 2"),
    ("F1", "content of pane 1"),
)


def first_frame(command: list[str], env: dict[str, str], marker: str, ready_marker: str) -> tuple[float, float, Tmux]:
    """Seconds from starting the process to the first screen that shows `marker`, and to the one that shows
    `ready_marker` (live data); the terminal stays open."""
    tmux = Tmux(width=120, height=36)
    start = time.perf_counter()
    tmux.start(command, env, REPO)
    tmux.wait_for(marker, timeout=60, poll_s=0.005)
    first = time.perf_counter() - start
    tmux.wait_for(ready_marker, timeout=60, poll_s=0.005)
    return first, time.perf_counter() - start, tmux


def switch_times(tmux: Tmux, panes, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        for key, marker in panes:
            start = time.perf_counter()
            tmux.send(key)
            tmux.wait_for(marker, timeout=20, poll_s=0.005)
            times.append(time.perf_counter() - start)
    return times


def app_process(tmux: Tmux) -> psutil.Process:
    pid = int(tmux.tmux("display-message", "-p", "-t", tmux.target, "#{pane_pid}").strip())
    process = psutil.Process(pid)
    # The pane runs the command through a shell only when it needs one; take the Python process either way.
    children = [p for p in process.children(recursive=True) if "python" in p.name().lower()]
    return children[0] if children and "python" not in process.name().lower() else process


def thread_seconds(process: psutil.Process) -> tuple[float, float]:
    """CPU seconds so far: (the whole process, its main thread). In claw the main thread is the UI's event loop;
    the session (gateway, simulator, sampler, store) runs in threads of its own."""
    total, main = 0.0, 0.0
    for thread in process.threads():
        spent = thread.user_time + thread.system_time
        total += spent
        if thread.id == process.pid:
            main = spent
    return total, main


def idle_cpu(process: psutil.Process, seconds: float) -> tuple[float, float]:
    """Percent of one core over `seconds`: (whole process, main thread)."""
    before = thread_seconds(process)
    time.sleep(seconds)
    after = thread_seconds(process)
    return tuple(100 * (a - b) / seconds for a, b in zip(after, before))


def median_ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="starts and switch rounds of each app")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="CPU measured over this long per pane")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="claw-bench-"))
    baseline_file = tmp / "baseline_app.py"
    baseline_file.write_text(BASELINE_APP)
    baseline_command = [sys.executable, str(baseline_file)]
    _, env = claw_command(tmp)

    results: dict = {"claw": {}, "baseline": {}}
    for name, command_for, marker, ready_marker, panes in (
        ("baseline", lambda: (baseline_command, env), "Pane5", "content of pane 1", BASELINE_PANES),
        # claw's first frame shows the tabs while the core starts; it is ready when GPU data shows.
        ("claw", lambda: claw_command(tmp), "F5 Requests", "source sim", CLAW_PANES),
    ):
        frames, readies, switches, cpu, rss = [], [], [], {}, None
        for round_index in range(args.rounds):
            command, run_env = command_for()
            seconds, ready, tmux = first_frame(command, run_env, marker, ready_marker)
            frames.append(seconds)
            readies.append(ready)
            try:
                if round_index == 0:
                    switches = switch_times(tmux, panes, args.rounds)
                    process = app_process(tmux)
                    for key, pane_marker in panes:
                        tmux.send(key)
                        tmux.wait_for(pane_marker)
                        time.sleep(1.0)
                        cpu[key] = idle_cpu(process, args.idle_seconds)
                    rss = process.memory_info().rss / 2**20
            finally:
                tmux.kill()
        results[name] = {
            "first_frame_ms": {"median": median_ms(frames), "max": 1000 * max(frames)},
            "ready_ms": {"median": median_ms(readies), "max": 1000 * max(readies)},
            "pane_switch_ms": {
                "median": median_ms(switches),
                "p95": 1000 * sorted(switches)[int(0.95 * (len(switches) - 1))],
            },
            "idle_cpu_pct": cpu,
            "rss_mib": rss,
        }

    claw, base = results["claw"], results["baseline"]
    print(f"{'':24}{'claw':>12}{'baseline':>12}{'ratio':>8}")
    print(f"{'(baseline: a minimal Textual app with five tabs, started and driven the same way)':>0}")
    rows = [
        ("first frame, median", claw["first_frame_ms"]["median"], base["first_frame_ms"]["median"], "ms"),
        ("first frame, max", claw["first_frame_ms"]["max"], base["first_frame_ms"]["max"], "ms"),
        ("live data, median", claw["ready_ms"]["median"], base["ready_ms"]["median"], "ms"),
        ("pane switch, median", claw["pane_switch_ms"]["median"], base["pane_switch_ms"]["median"], "ms"),
        ("pane switch, p95", claw["pane_switch_ms"]["p95"], base["pane_switch_ms"]["p95"], "ms"),
        ("RSS", claw["rss_mib"], base["rss_mib"], "MiB"),
    ]
    for (key, _), (base_key, _) in zip(CLAW_PANES, BASELINE_PANES):
        rows.append((f"{key} UI thread CPU", claw["idle_cpu_pct"][key][1], base["idle_cpu_pct"][base_key][1], "%"))
        rows.append((f"{key} process CPU", claw["idle_cpu_pct"][key][0], base["idle_cpu_pct"][base_key][0], "%"))
    for label, value, baseline, unit in rows:
        print(f"{label:24}{value:>10.1f}{unit:>2}{baseline:>10.1f}{unit:>2}{value / baseline if baseline else 0:>8.2f}")
    print(
        "\nCPU in % of one core while nobody types, at the default 4 Hz refresh. The UI thread is the event loop that"
    )
    print("draws the panes; the process adds claw's session (gateway, simulator, telemetry sampler, demo traffic).")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
