"""`claw gpu` through claw_tui.cli.main: JSON shape, table, watch, record, replay, and the no-driver message."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from claw_tui import cli
from claw_tui.commands import gpu as gpu_cmd
from claw_tui.telemetry.replay import load_trace
from claw_tui.telemetry.types import GpuProcess, GpuSnapshot
from tests.test_nvml_source import FakeGpu, FakeNvml

BURST = Path(__file__).parent / "fixtures" / "traces" / "h200_decode_burst.jsonl.gz"
SPEC_KEYS = {
    "index",
    "name",
    "power_w",
    "power_limit_w",
    "energy_j",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "util_pct",
    "temp_c",
    "vram_used_mib",
    "vram_total_mib",
    "pstate",
    "clock_event_reasons",
}


@pytest.fixture
def fake_pynvml(monkeypatch) -> FakeNvml:
    fake = FakeNvml([FakeGpu(processes=[(4242, 8 * 1024**3)]), FakeGpu(name="NVIDIA H100", uuid="GPU-1")])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["gpu", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_gpu_is_registered_in_the_cli():
    assert cli.build_parser().parse_args(["gpu", "--json"]).run is gpu_cmd.run_gpu


# ----- JSON ---------------------------------------------------------------------------------------------------------


def test_replay_json_has_the_spec_shape(capsys):
    code, out, err = run(capsys, "--replay", str(BURST), "--json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert list(data) == ["gpus"]
    [gpu] = data["gpus"]
    assert set(gpu) == SPEC_KEYS | {"processes"}
    assert gpu["index"] == 0 and gpu["name"] == "NVIDIA H200"
    for key in ("power_w", "power_limit_w", "energy_j", "util_pct", "temp_c", "vram_used_mib", "vram_total_mib"):
        assert isinstance(gpu[key], float), key
    assert isinstance(gpu["sm_clock_mhz"], int) and isinstance(gpu["mem_clock_mhz"], int)
    assert gpu["pstate"] == "P0"
    assert isinstance(gpu["clock_event_reasons"], list)
    assert gpu["energy_j"] > 1000  # the counter, filled in although snapshots leave it out
    assert gpu["power_limit_w"] == 700.0 and gpu["vram_total_mib"] == 143771.0


def test_nvml_json_lists_every_gpu(capsys, fake_pynvml):
    code, out, _ = run(capsys, "--json")
    assert code == 0
    gpus = json.loads(out)["gpus"]
    assert [g["name"] for g in gpus] == ["NVIDIA H200", "NVIDIA H100"]
    assert gpus[0]["energy_j"] == 123_456.789
    assert gpus[0]["clock_event_reasons"] == ["gpu_idle"]
    assert gpus[0]["processes"][0]["vram_mib"] == 8192.0
    assert fake_pynvml.initialised == 0  # closed on the way out


def test_not_supported_fields_are_null_in_json(capsys, fake_pynvml):
    fake_pynvml.gpus[0].unsupported |= {"nvmlDeviceGetTemperature", "nvmlDeviceGetTotalEnergyConsumption"}
    code, out, _ = run(capsys, "--json")
    gpu = json.loads(out)["gpus"][0]
    assert code == 0 and gpu["temp_c"] is None and gpu["energy_j"] is None


# ----- the table ----------------------------------------------------------------------------------------------------


def test_table_from_replay(capsys):
    code, out, _ = run(capsys, "--replay", str(BURST))
    assert code == 0
    lines = out.splitlines()
    assert "source: replay" in lines[0]
    assert lines[1].startswith("[0] NVIDIA H200 | ")
    assert "/ 700 W" in lines[1] and "kJ" in lines[1] and "/ 143771 MiB" in lines[1] and "P0" in lines[1]
    assert "python3 (pid 421)" in lines[2]


def test_table_shows_na_for_missing_fields():
    snap = GpuSnapshot(index=1, name="Old GPU", ts=0.0, processes=[GpuProcess(7, "ollama", None, True)])
    line = gpu_cmd.format_gpu_line(snap)
    assert line == (
        "[1] Old GPU | N/A / N/A W | N/A J | SM N/A MHz  mem N/A MHz | N/A % | N/A °C | N/A / N/A MiB | N/A | -"
    )
    assert gpu_cmd.format_process_line(snap.processes[0]) == "    └ ollama (pid 7)  N/A MiB  [ollama runner]"


@pytest.mark.parametrize(
    ("joules", "text"), [(12.34, "12.3 J"), (4927.6, "4.93 kJ"), (2.5e6, "2.50 MJ"), (None, "N/A J")]
)
def test_energy_units(joules, text):
    assert gpu_cmd.format_energy(joules) == text


# ----- no driver ----------------------------------------------------------------------------------------------------


def test_no_driver_is_one_line_and_exit_1(capsys, fake_pynvml):
    fake_pynvml.init_error = FakeNvml.NVML_ERROR_DRIVER_NOT_LOADED
    code, out, err = run(capsys)
    assert code == 1 and out == ""
    assert err == (
        "claw: no NVIDIA GPU/driver found (NVML: Driver Not Loaded); "
        "try 'claw gpu --demo' (a simulated GPU) or 'claw gpu --replay FILE'\n"
    )


def test_no_library_with_json_is_the_same_line(capsys, fake_pynvml):
    fake_pynvml.init_error = FakeNvml.NVML_ERROR_LIBRARY_NOT_FOUND
    code, out, err = run(capsys, "--json")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "NVML Shared Library Not Found" in err and "Traceback" not in err


def test_gpu_lost_while_reading_is_one_line(capsys, fake_pynvml, monkeypatch):
    real_count = fake_pynvml.nvmlDeviceGetCount

    def count_then_lose():
        n = real_count()
        fake_pynvml.lost = True  # the GPU falls off the bus right after open
        return n

    fake_pynvml.lost = False
    monkeypatch.setattr(fake_pynvml, "nvmlDeviceGetCount", count_then_lose)
    code, _, err = run(capsys)
    assert code == 1 and err.startswith("claw: ") and err.count("\n") == 1


def test_bad_replay_file_is_one_line(capsys, tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"type": "header", "version": 1, "gpus": [{"index": 0, "name": "x"}]}\n{"type": "pow')
    code, out, err = run(capsys, "--replay", str(broken))
    assert code == 2 and out == ""
    assert err.startswith("claw: --replay: trace ") and "line 2" in err and err.count("\n") == 1


def test_demo_reads_the_simulated_gpu(capsys):
    code, out, _ = run(capsys, "--demo", "--json")
    [gpu] = json.loads(out)["gpus"]
    assert code == 0 and gpu["name"] == "NVIDIA H200" and gpu["power_w"] > 50


# ----- watch --------------------------------------------------------------------------------------------------------


def test_watch_refreshes_count_times(capsys, monkeypatch):
    monkeypatch.setattr(gpu_cmd.time, "sleep", lambda s: None)
    code, out, _ = run(capsys, "--replay", str(BURST), "--watch", "--count", "3", "--interval", "0.01")
    assert code == 0 and out.count("[0] NVIDIA H200") == 3


def test_watch_json_is_one_object_per_line(capsys, monkeypatch):
    monkeypatch.setattr(gpu_cmd.time, "sleep", lambda s: None)
    code, out, _ = run(capsys, "--replay", str(BURST), "--watch", "--json", "--count", "2")
    assert code == 0
    assert [list(json.loads(line)) for line in out.splitlines()] == [["gpus"], ["gpus"]]


def test_watch_ends_cleanly_on_ctrl_c(capsys, monkeypatch):
    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(gpu_cmd.time, "sleep", interrupt)
    code, out, _ = run(capsys, "--replay", str(BURST), "--watch")
    assert code == 0 and out.count("[0] NVIDIA H200") == 1


def test_watch_survives_a_lost_gpu(capsys, monkeypatch, fake_pynvml):
    ticks = iter(range(100))

    def sleep(seconds):
        tick = next(ticks)
        fake_pynvml.lost = tick == 0  # lost for one refresh, back for the next
        if tick == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(gpu_cmd.time, "sleep", sleep)
    code, out, err = run(capsys, "--watch")
    assert code == 0
    assert out.count("[0] NVIDIA H200") == 2  # first refresh, then again after the reopen
    assert "GPU is lost" in err and "retrying" in err


# ----- record -------------------------------------------------------------------------------------------------------


def test_record_from_replay_then_read_it_back(capsys, tmp_path):
    out_file = tmp_path / "rec.jsonl.gz"
    code, out, _err = run(capsys, "--replay", str(BURST), "--record", str(out_file), "--seconds", "0.6")
    assert code == 0
    assert re.match(
        rf"recorded 0\.[67] s to {re.escape(str(out_file))}", out
    )  # 0.6 s asked; a busy machine adds a poll
    assert "GPU 0:" in out and "power samples (median Δt 2" in out and "energy counter Δ" in out
    trace = load_trace(out_file)
    assert trace.header["source"] == "replay"
    assert 20 <= len(trace.power[0]) <= 40
    code, out, _ = run(capsys, "--replay", str(out_file), "--json")
    assert code == 0 and json.loads(out)["gpus"][0]["name"] == "NVIDIA H200"


def test_record_to_an_unwritable_path_is_one_line(capsys, tmp_path):
    code, _, err = run(
        capsys, "--replay", str(BURST), "--record", str(tmp_path / "no" / "such" / "dir.jsonl"), "--seconds", "0.1"
    )
    assert code == 1 and err.startswith("claw: cannot write trace") and err.count("\n") == 1


def test_seconds_must_be_positive(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["gpu", "--record", "x", "--seconds", "0"])
    assert caught.value.code == 2
