"""The GPU overview (Power pane, `o`): eight GPUs from the fake NVML at once, their processes with the model each
Ollama runner serves, the host's CPU and RAM; N/A for what a GPU does not report; 80×24 and 200×50."""

from __future__ import annotations

import httpx
import pytest
from textual.widgets import DataTable

from claw_tui.console.telemetry_view import snapshot_from_json
from claw_tui.session import Session, SessionOptions, SessionThread
from claw_tui.telemetry.nvml import NvmlSource
from claw_tui.telemetry.types import GpuProcess, GpuSnapshot
from claw_tui.ui.app import ClawApp
from claw_tui.ui.panes.overview import GpuOverview, runner_models
from claw_tui.ui.panes.power import PowerPane
from tests.fake_nvml.pynvml import FakeNvml
from tests.gateway_support import SimBackends, gateway_config
from tests.test_snapshots import START, FrozenClock, settle
from tests.test_tui import text_of, wait_for

GIB = 2**30
RUNNER_8B, RUNNER_32B, TRAINER = 41001, 41002, 52000
HOST = {"cpu_pct": 23.0, "cpus": 64, "ram_used_mib": 212_992.0, "ram_total_mib": 1_031_168.0}


class SteadyNvml(FakeNvml):
    """Eight fake H200s whose energy counters stand still (a snapshot must not depend on the time it was taken)."""

    def nvmlDeviceGetTotalEnergyConsumption(self, handle) -> int:
        return (1_234_567 + 98_765 * handle) * 1000


def describe(pid: int) -> tuple[str, bool]:
    return {RUNNER_8B: ("ollama", True), RUNNER_32B: ("ollama", True), TRAINER: ("python3", False)}.get(
        pid, (f"pid {pid}", False)
    )


def loaded_sizes_mib(url: str) -> dict[str, float]:
    for model in ("qwen3:8b", "qwen3:32b"):
        httpx.post(f"{url}/api/generate", json={"model": model, "keep_alive": "1h"}, timeout=30).raise_for_status()
    models = httpx.get(f"{url}/api/ps", timeout=10).json()["models"]
    return {m["name"]: m["size_vram"] / 2**20 for m in models}


@pytest.fixture(scope="module")
def eight_gpus(tmp_path_factory):
    """A session in front of a simulated Ollama with two models loaded, its telemetry eight fake GPUs: the 8B runner
    on GPU 0, the 32B runner split over GPUs 2 and 3, a training process on GPU 5."""
    with SimBackends([{}]) as sims:
        sizes = loaded_sizes_mib(sims.url(0))
        nvml = SteadyNvml(
            gpus=8,
            processes={
                0: [(RUNNER_8B, int(sizes["qwen3:8b"]) + 450)],
                2: [(RUNNER_32B, int(sizes["qwen3:32b"] / 2) + 300)],
                3: [(RUNNER_32B, int(sizes["qwen3:32b"] / 2) + 300)],
                5: [(TRAINER, 30_720)],
            },
        )
        clock = FrozenClock(START)
        config = gateway_config(sims)
        config.telemetry.poll_interval_s = 3600  # the test drives the sampler
        options = SessionOptions(
            listen=("127.0.0.1", 0),
            store_path=tmp_path_factory.mktemp("overview") / "s.db",
            telemetry_source=NvmlSource(nvml=nvml, clock=clock, process_describer=describe),
            clock=clock,
        )
        runner = SessionThread(Session(config, options))
        runner.start()
        try:
            for _ in range(130):  # a minute and more of history: the overview's power sparklines are full
                clock.now += 0.5
                runner.session.sampler.tick()
            yield runner.session
        finally:
            runner.stop()


@pytest.fixture(autouse=True)
def steady_host(monkeypatch):
    """The service's CPU and RAM as psutil would say, held still."""
    monkeypatch.setattr("claw_tui.console.feed.host_load", lambda: {k: v for k, v in HOST.items() if k != "cpus"})
    monkeypatch.setattr("claw_tui.console.feed.os.cpu_count", lambda: HOST["cpus"])


def app_for(session) -> ClawApp:
    return ClawApp(session, refresh_hz=0, gateway_label="127.0.0.1:18789")


async def overview_ready(pilot) -> GpuOverview:
    await settle(pilot)
    pilot.app.model.host = dict(HOST)
    pane = pilot.app.query_one(PowerPane)
    overview = pilot.app.query_one(GpuOverview)
    # The runners' models come from /api/ps, asked in the background.
    await wait_for(lambda: pane.refresh_data(force_plot=True) or "qwen3:32b" in table_text(overview, "processes"))
    pane.refresh_data(force_plot=True)
    await settle(pilot)
    return overview


def table_text(overview: GpuOverview, which: str) -> str:
    table = overview.query_one(f"#overview-{which}", DataTable)
    return "\n".join(" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count))


# ---- behaviour ------------------------------------------------------------------------------------------------------
async def test_eight_gpus_open_on_the_overview_with_their_processes_at_80x24(eight_gpus):
    app = app_for(eight_gpus)
    async with app.run_test(size=(80, 24)) as pilot:
        overview = await overview_ready(pilot)
        pane = app.query_one(PowerPane)
        assert pane.overview  # several GPUs: the first screen shows them all
        gpus = overview.query_one("#overview-gpus", DataTable)
        assert gpus.row_count == 8
        labels = [str(c.label) for c in gpus.columns.values()]
        assert {"GPU", "power W", "util", "temp", "VRAM"} <= set(labels)
        assert gpus.virtual_size.width <= gpus.scrollable_content_region.width  # nothing cut at the right
        assert gpus.region.bottom <= 23  # all eight rows on the screen, above the footer
        processes = table_text(overview, "processes")
        assert "qwen3:8b" in processes and "qwen3:32b" in processes and "python3" in processes
        assert processes.count("qwen3:32b") == 2  # one runner on two GPUs
        # What the table leaves out at 80 columns, the highlighted GPU's line says.
        line = text_of(overview.query_one("#overview-gpu-line"))
        for words in ("GPU 0 NVIDIA H200", "energy counter 1,234.6 kJ", "ECC 0 corrected, 0 uncorrected", "Xid 0"):
            assert words in line, words
        assert "reasons gpu_idle" in line and "memory util 5%" in line and "P-state P0" in line
        assert "fan N/A" not in line and "N/A" in table_text(overview, "gpus")  # the fan has its column
        host = text_of(overview.query_one("#overview-host"))
        assert "host CPU 23% of 64" in host and "RAM 208.0/1007 GiB" in host and "8 GPUs" in host

        # Down to GPU 5, Enter: that GPU in detail; o: back to all of them.
        gpus.focus()
        for _ in range(5):
            await pilot.press("down")
        assert "GPU 5" in text_of(overview.query_one("#overview-gpu-line"))
        await pilot.press("enter")
        assert not pane.overview and pane.gpu_index == 5
        await pilot.pause()
        assert "GPU 5" in str(app.query_one("#power-stats").render())
        await pilot.press("o")
        assert pane.overview and overview.highlighted_gpu == 5


async def test_every_field_tolerates_a_gpu_that_reports_none_of_it(eight_gpus):
    blank = GpuSnapshot(index=0, name="NVIDIA A10", ts=0.0, processes=[GpuProcess(7, "ollama", None, True)])
    app = app_for(eight_gpus)
    async with app.run_test(size=(200, 50)) as pilot:
        overview = await overview_ready(pilot)
        overview.show(app.model, [blank], [])
        await pilot.pause()
        row = table_text(overview, "gpus")
        assert row.count("N/A") >= 8  # power, limit, clocks, util, temp, fan, PCIe, ECC, Xid …
        assert "runner" in table_text(overview, "processes")  # a runner with no model known is still a runner


def test_runners_are_matched_to_the_loaded_models_by_the_memory_they_hold():
    loaded = [
        {"name": "qwen3:8b", "size_vram": 6 * GIB},
        {"name": "qwen3:32b", "size_vram": 22 * GIB},
        {"name": "llama3.2:3b", "size_vram": int(2.5 * GIB)},
    ]
    processes = [
        (0, GpuProcess(1, "ollama", 6.4 * 1024, True)),  # weights + CUDA context
        (1, GpuProcess(2, "ollama", 11.2 * 1024, True)),  # a model split over two GPUs …
        (2, GpuProcess(2, "ollama", 11.2 * 1024, True)),  # … is one runner
        (3, GpuProcess(3, "python3", 6 * 1024, False)),  # not a runner: never named
        (4, GpuProcess(4, "ollama", 40 * 1024, True)),  # nothing loaded that large
    ]
    assert runner_models(processes, loaded) == {1: "qwen3:8b", 2: "qwen3:32b"}


def test_the_new_fields_travel_in_the_console_json_both_sources_use():
    snapshot = GpuSnapshot(
        index=3,
        name="NVIDIA H100",
        ts=12.5,
        fan_pct=None,
        pcie_tx_kib_s=850.0,
        pcie_rx_kib_s=1_250_000.0,
        ecc_corrected=2,
        ecc_uncorrected=0,
        xid_count=1,
        last_xid=79,
        processes=[GpuProcess(9, "ollama", 4096.0, True, sm_util_pct=87.0, mem_util_pct=40.0)],
    )
    assert snapshot_from_json(snapshot.console_json()) == snapshot
    assert "pcie_tx_kib_s" not in snapshot.to_json()  # `claw gpu --json` keeps the shape the SPEC gives


def test_the_service_publishes_its_host_cpu_and_ram(eight_gpus):
    stats = eight_gpus.feed.stats_json()
    assert stats["host"] == HOST


# ---- snapshots ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(80, 24), (200, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_overview_of_eight_fake_gpus(snap_compare, eight_gpus, size):
    async def run_before(pilot):
        await overview_ready(pilot)

    assert snap_compare(app_for(eight_gpus), terminal_size=size, run_before=run_before)


def test_a_gpus_last_minute_of_power_reads_as_a_sparkline_against_its_limit():
    from claw_tui.ui.panes.overview import sparkline

    now = 1000.0
    points = [(now - 60 + t, 700.0 * t / 60) for t in range(60)]  # 0 W rising to the limit
    line = sparkline(points, now, 700.0).plain
    assert len(line) == 20 and line[0] == "▁" and line[-1] in "▇█"
    assert list(line) == sorted(line)  # never falls while the power only rises
    assert sparkline(points[:30], now, 700.0).plain.endswith("·" * 10)  # no samples: no block
    assert sparkline(points, now, None).plain == "·" * 20  # no limit known: nothing to scale against


async def test_an_attached_console_gets_the_overviews_fields_from_the_service(tmp_path):
    """The remote source: the fields travel in the service's telemetry events and state, the host is the service's."""
    from tests.test_console_attach import Service, attached_app

    service = Service(tmp_path)
    service.start()
    try:
        app = attached_app(service)
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(lambda: app.panes_ready)
            await wait_for(lambda: app.model.host.get("ram_total_mib") and app.model.telemetry.latest_all())
            await pilot.press("o")  # one simulated GPU: detail first, o for the overview
            overview = app.query_one(GpuOverview)
            await wait_for(lambda: table_text(overview, "gpus"))
            assert "host CPU" in text_of(overview.query_one("#overview-host"))
            row = table_text(overview, "gpus")
            assert "120K/" in row and "0/0" in row  # the simulated card's PCIe and ECC, through the service
    finally:
        service.stop()
