"""The Power pane driven through Pilot: GPU switching, time windows, redraw discipline, layouts, lost telemetry,
and the braille chart underneath."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from rich.segment import Segment

from claw_tui.telemetry.replay import load_trace, write_trace
from claw_tui.telemetry.types import GpuSnapshot
from claw_tui.ui.app import ClawApp
from claw_tui.ui.panes.power import Cell, PowerPane, grid_lines, merge_intervals
from claw_tui.ui.panes.power_widgets import BrailleChart, GpuBar, HLine, Series, bucket, nice_step
from tests.test_sampler_replay import BURST, POWER_CAP, default_config, play, replay_session


def two_gpu_trace(tmp_path) -> Path:
    """GPU 0 runs the decode burst, GPU 1 the power-capped load: a two-GPU recording."""
    burst, capped = load_trace(BURST), load_trace(POWER_CAP)
    burst.statics.append(replace(capped.statics[0], index=1, uuid="GPU-1"))
    burst.power[1] = capped.power[0]
    burst.snapshots[1] = capped.snapshots[0]
    burst.energy[1] = capped.energy[0]
    burst.duration_s = min(burst.duration_s, capped.duration_s)
    path = tmp_path / "two_gpus.jsonl.gz"
    write_trace(burst, path)
    return path


def app_for(session) -> ClawApp:
    return ClawApp(session, refresh_hz=0, gateway_label="127.0.0.1:18789")


@pytest.fixture
def burst_runner(tmp_path):
    runner, clock = replay_session(tmp_path, BURST)
    play(runner.session, clock, BURST)
    yield runner, clock
    runner.stop()


# ----- what the pane shows ----------------------------------------------------------------------------------------


async def test_pane_shows_state_energy_and_the_requests_behind_it(burst_runner):
    runner, _ = burst_runner
    app = app_for(runner.session)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        pane = app.query_one(PowerPane)
        stats = str(app.query_one("#power-stats").render())
        for word in (
            "GPU 0",
            "H200",
            "power",
            "/700 W",
            "σ60s",
            "SM",
            "mem",
            "util",
            "temp",
            "VRAM",
            "P-state",
            "energy",
            "idle",
            "requests",
            "tok/J all-in",
            "tok/J requests",
            "reasons",
            "governor off",
            "in flight",
            "replay 50 Hz",
        ):
            assert word in stats, word
        assert pane.has_class("-tall") and pane.has_class("-wide")
        requests = str(app.query_one("#power-requests").render())
        assert requests.count("qwen3:32b") == 7 and "J/tok" in requests
        processes = str(app.query_one("#power-processes").render())
        assert "python3" in processes and "GiB" in processes
        power_chart = app.query_one("#power-chart", BrailleChart)
        assert power_chart.has_data
        assert "Power W · GPU 0" in str(power_chart.border_title)
        assert "limit 700" in str(power_chart.border_subtitle)
        assert app.query_one("#clock-chart", BrailleChart).has_data
        assert app.query_one("#util-chart", BrailleChart).display


async def test_small_terminal_keeps_the_essentials(burst_runner):
    runner, _ = burst_runner
    app = app_for(runner.session)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        pane = app.query_one(PowerPane)
        assert not pane.has_class("-tall")
        assert not app.query_one("#util-chart").display and not app.query_one("#power-bottom").display
        chart = app.query_one("#power-chart", BrailleChart)
        assert chart.size.height >= 10 and chart.size.width >= 40
        stats = app.query_one("#power-stats")
        assert stats.size.height <= 5
        assert all(len(line.text.rstrip()) <= 78 for line in [stats.render_line(y) for y in range(stats.size.height)])


async def test_clock_chart_is_not_blank_a_few_seconds_after_start(tmp_path):
    runner, clock = replay_session(tmp_path, BURST)
    try:
        play(runner.session, clock, BURST, seconds=3.0)
        app = app_for(runner.session)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            chart = app.query_one("#clock-chart", BrailleChart)
            assert chart.has_data
            # The title names the window chosen (w / W); the axis of a young session spans the time it has.
            assert "last 2 min" in str(chart.border_title)
            text = "".join(chart.render_line(y).text for y in range(chart.size.height))
            assert "-10 s" in text and "2 min" not in text
            assert any("\u2801" <= ch <= "\u28ff" for ch in text)  # braille dots drawn
    finally:
        runner.stop()


async def test_power_alert_is_shown_with_its_hint(tmp_path):
    runner, clock = replay_session(tmp_path, POWER_CAP)
    try:
        marks = {label: t for t, label in load_trace(POWER_CAP).marks}
        play(runner.session, clock, POWER_CAP, seconds=marks["load_end"] - 0.5)
        app = app_for(runner.session)
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.pause()
            alerts = app.query_one("#power-alerts")
            assert alerts.display
            text = str(alerts.render())
            assert "GPU 0 at its power cap" in text and "consider a lower clock or fewer parallel requests" in text
            assert "sw_power_cap" in str(app.query_one("#power-stats").render())
    finally:
        runner.stop()


# ----- keys, selection, redraw discipline -----------------------------------------------------------------------------


async def test_gpu_keys_and_clicks_switch_gpu(tmp_path):
    runner, clock = replay_session(tmp_path, two_gpu_trace(tmp_path))
    try:
        play(runner.session, clock, BURST, seconds=12.0)
        app = app_for(runner.session)
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause()
            pane = app.query_one(PowerPane)
            assert pane.overview  # two GPUs open on the overview; o shows one of them in detail
            await pilot.press("o")
            await pilot.pause()
            bar = app.query_one("#power-gpus", GpuBar)
            assert bar.display and "0 H200" in str(bar.render()) and "1 H200" in str(bar.render())
            assert pane.gpu_index == 0
            await pilot.press("right_square_bracket")
            assert pane.gpu_index == 1
            assert "GPU 1" in str(app.query_one("#power-stats").render())
            assert "GPU 1" in str(app.query_one("#power-chart").border_title)
            await pilot.press("right_square_bracket")
            assert pane.gpu_index == 0
            await pilot.press("left_square_bracket")
            assert pane.gpu_index == 1
            bar.action_select(0)
            await pilot.pause()
            assert pane.gpu_index == 0
    finally:
        runner.stop()


async def test_single_gpu_hides_the_bar_and_ignores_gpu_keys(burst_runner):
    runner, _ = burst_runner
    app = app_for(runner.session)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        assert not app.query_one("#power-gpus").display
        await pilot.press("right_square_bracket")
        assert app.query_one(PowerPane).gpu_index == 0


async def test_w_cycles_the_time_window(burst_runner):
    runner, clock = burst_runner
    clock.now += 4000  # an hour-old session: every window has room
    app = app_for(runner.session)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        pane = app.query_one(PowerPane)
        chart = app.query_one("#power-chart", BrailleChart)
        assert pane.window_s == 120.0 and "2 min" in str(chart.border_title)
        await pilot.press("w")
        assert pane.window_s == 600.0 and "10 min" in str(chart.border_title)
        await pilot.press("w")
        assert pane.window_s == 3600.0 and "1 h" in str(chart.border_title)
        await pilot.press("w")
        assert pane.window_s == 10.0
        await pilot.press("W")
        assert pane.window_s == 3600.0


async def test_charts_redraw_at_most_twice_a_second_and_only_while_visible(burst_runner):
    runner, clock = burst_runner
    app = ClawApp(runner.session, refresh_hz=0)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        pane = app.query_one(PowerPane)
        start = pane.chart_draws
        for _ in range(40):  # 4 s at a 10 Hz refresh
            clock.now += 0.1
            app.refresh_active_pane()
        assert 1 <= pane.chart_draws - start <= 8
        await pilot.press("f5")
        hidden = pane.chart_draws
        for _ in range(40):
            clock.now += 0.1
            app.refresh_active_pane()
        assert pane.chart_draws == hidden
        await pilot.press("f1")
        await pilot.pause()
        assert pane.chart_draws > hidden


async def test_number_keys_still_switch_panes_from_the_power_pane(burst_runner):
    runner, _ = burst_runner
    app = app_for(runner.session)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("f1")  # the Power pane holds the focus once it is shown
        await pilot.pause()
        assert app.focused is app.query_one(PowerPane)
        await pilot.press("5")
        assert app.query_one("#panes").active == "requests"


# ----- no telemetry, lost telemetry, N/A fields -----------------------------------------------------------------------


async def test_no_telemetry_says_so_without_a_traceback(tmp_path):
    from tests.conftest import start_demo_session

    config = default_config()
    config.telemetry.source = "none"
    runner = start_demo_session(tmp_path, config)
    try:
        app = app_for(runner.session)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            stats = str(app.query_one("#power-stats").render())
            assert "No GPU telemetry" in stats and "gateway keeps working" in stats
            chart = app.query_one("#power-chart", BrailleChart)
            assert not chart.has_data
            assert "no telemetry" in "".join(chart.render_line(y).text for y in range(chart.size.height))
    finally:
        runner.stop()


async def test_lost_gpu_shows_the_error_and_recovers(tmp_path):
    from claw_tui.session import Session, SessionOptions, SessionThread
    from tests.test_sampler import FakeClock, SyntheticSource

    clock = FakeClock()
    config = default_config()
    config.telemetry.poll_interval_s = 3600
    source = SyntheticSource(clock)
    runner = SessionThread(
        Session(
            config,
            SessionOptions(
                demo=True, listen=("127.0.0.1", 0), clock=clock, store_path=tmp_path / "b.db", telemetry_source=source
            ),
        )
    )
    runner.start()
    try:
        sampler = runner.session.sampler
        app = app_for(runner.session)
        async with app.run_test(size=(120, 36)) as pilot:
            source.fail = True
            clock.now += 0.25
            sampler.tick()
            await pilot.pause()  # the console applies the events the tick published
            app.query_one(PowerPane).refresh_data(force_plot=True)
            await pilot.pause()
            stats = str(app.query_one("#power-stats").render())
            assert "GPU telemetry lost" in stats and "GPU is lost" in stats
            assert "telemetry lost" in str(app.query_one("#power-alerts").render())
            source.fail = False
            for _ in range(24):
                clock.now += 0.25
                sampler.tick()
            await pilot.pause()
            app.query_one(PowerPane).refresh_data(force_plot=True)
            await pilot.pause()
            assert "GPU 0" in str(app.query_one("#power-stats").render())
            assert not app.query_one("#power-alerts").display
    finally:
        runner.stop()


async def test_fields_the_gpu_does_not_support_show_na(tmp_path):
    from tests.test_sampler import SyntheticSource

    class Sparse(SyntheticSource):
        def snapshot(self, index):
            return GpuSnapshot(index=index, name="Old GPU", ts=self.clock())

        def energy_counter_j(self, index):
            return None

    from claw_tui.session import Session, SessionOptions, SessionThread
    from tests.test_sampler import FakeClock

    clock = FakeClock()
    config = default_config()
    config.telemetry.poll_interval_s = 3600
    runner = SessionThread(
        Session(
            config,
            SessionOptions(
                demo=True,
                listen=("127.0.0.1", 0),
                clock=clock,
                store_path=tmp_path / "s.db",
                telemetry_source=Sparse(clock),
            ),
        )
    )
    runner.start()
    try:
        for _ in range(8):
            clock.now += 0.25
            runner.session.sampler.tick()
        app = app_for(runner.session)
        async with app.run_test(size=(120, 36)) as pilot:
            await pilot.pause()
            stats = str(app.query_one("#power-stats").render())
            assert "SM N/A" in stats and "temp N/A" in stats and "VRAM N/A" in stats and "P-state N/A" in stats
            assert "samples vs counter N/A" in stats
    finally:
        runner.stop()


# ----- pieces ---------------------------------------------------------------------------------------------------------


def test_grid_uses_as_many_columns_as_fit():
    cells = [Cell("label", "value") for _ in range(12)]
    assert len(grid_lines(cells, 200)) == 2  # 8 columns at most
    assert len(grid_lines(cells, 50)) == 3  # 4 columns of 11 + 3 gaps of 2 = 50
    assert all(line.cell_length <= 50 for line in grid_lines(cells, 50))
    assert len(grid_lines(cells, 30)) == 6
    assert len(grid_lines(cells, 5)) == 12


def test_window_labels():
    from claw_tui.ui.panes.power import window_label

    assert [window_label(s) for s in (10, 27.3, 60, 90, 120, 3027, 3600, 5400)] == [
        "10 s",
        "27 s",
        "1 min",
        "1.5 min",
        "2 min",
        "50 min",
        "1 h",
        "1.5 h",
    ]


def test_merge_intervals():
    assert merge_intervals([(3, 4), (0, 1), (0.5, 2), (4, 5)]) == [(0, 2), (3, 5)]


def test_bucket_mean_and_max():
    points = [(0.1, 1.0), (0.2, 3.0), (0.6, 10.0), (0.99, None), (1.0, 7.0), (1.5, 99.0)]
    assert bucket(points, 0.0, 1.0, 2, "mean") == [2.0, 8.5]
    assert bucket(points, 0.0, 1.0, 2, "max") == [3.0, 10.0]


def test_nice_steps():
    assert nice_step(735, 5) == 200
    assert nice_step(100, 5) == 20
    assert nice_step(3300, 4) == 1000


async def test_braille_chart_draws_lines_at_the_right_height():
    from textual.app import App

    class ChartApp(App):
        CSS = "BrailleChart { width: 24; height: 6; }"

        def compose(self):
            yield BrailleChart(id="c")

    app = ChartApp()
    async with app.run_test(size=(30, 8)) as pilot:
        chart = app.query_one(BrailleChart)
        chart.plot(
            series=[Series([(x / 10, 100.0) for x in range(11)], "chart--series-1")],
            x_range=(0, 1),
            y_range=(0, 100),
            hlines=[HLine(0.0, "chart--limit")],
            x_labels=[(0, "a"), (1, "b")],
        )
        await pilot.pause()
        rows = [chart.render_line(y).text for y in range(6)]
        assert rows[0].startswith("100┤") and rows[4].startswith("  0┤")
        assert set(rows[0][4:]) == {"⠉"}  # the line at the top of the plot: the top dots of every cell
        assert rows[5].strip().startswith("a") and rows[5].rstrip().endswith("b")
        assert isinstance(chart.render_line(0)._segments[0], Segment)
