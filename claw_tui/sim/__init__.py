"""claw's built-in simulator: a simulated GPU and a simulated Ollama server, for `claw --demo`, tests and benches."""

from claw_tui.sim.gpu import SimGPU, SimTelemetrySource
from claw_tui.sim.server import SimServer, SimState, create_sim_app

__all__ = ["SimGPU", "SimServer", "SimState", "SimTelemetrySource", "create_sim_app"]
