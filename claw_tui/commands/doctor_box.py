"""What `claw doctor` checks against: the configured backends and agents, and a claw gateway to scrape and load.

The gateway is the claw already running at the configured address; with --demo, a simulated box (GPU, Ollama and
gateway) started in this process; with --load and no claw running, a gateway started in this process on a free
loopback port (the governor stays a dry run: the doctor never touches a clock).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from claw_tui.commands.doctor_load import LoadTarget
from claw_tui.config import BackendConfig, Config

if TYPE_CHECKING:
    from claw_tui.session import Session
    from claw_tui.sim.gpu import SimGPU

STATUS_TIMEOUT_S = 1.5  # a claw answers its status at once; whatever else holds the port may never answer


@dataclass
class Box:
    backends: list[BackendConfig]
    agents: Sequence[Any]  # AgentConfig, or the demo's gateway agents
    gateway: LoadTarget | None = None  # where the load goes
    scraped: LoadTarget | None = None  # the gateway whose /metrics is checked: the running one (or the demo's)
    sim_gpus: list[SimGPU] | None = None  # --demo: the simulated GPUs behind the simulated Ollama
    problems: list[str] = field(default_factory=list)

    def for_backend_checks(self, config: Config) -> Config:
        return dataclasses.replace(config, backends=self.backends, agents=list(self.agents))


def configured_url(config: Config) -> str:
    host, port = config.gateway.host_port()
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def client_headers(config: Config) -> dict[str, str]:
    tokens = config.gateway.tokens or config.gateway.admin_tokens
    return {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}


def claw_status(config: Config) -> dict[str, Any] | None:
    """The status of the claw running at the configured address, or None when none answers there."""
    try:
        response = httpx.get(
            configured_url(config) + "/claw/v1/status", headers=client_headers(config), timeout=STATUS_TIMEOUT_S
        )
        status: dict[str, Any] = response.json()
        status["session"]["id"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return status


@contextmanager
def open_box(config: Config, *, demo: bool, need_gateway: bool) -> Iterator[Box]:
    if demo:
        with started_session(config, demo=True) as (session, problem):
            if session is None:
                yield Box(config.backends, config.agents, problems=[problem])
                return
            sim = session.sim
            assert sim is not None  # a demo session runs the simulator
            demo_gateway = LoadTarget(session.gateway_url, session.gateway_headers(), "the simulated box (demo)")
            yield Box(
                [BackendConfig(name="sim", kind="ollama", url=sim.url)],
                config.agents or session.agents,
                gateway=demo_gateway,
                scraped=demo_gateway,
                sim_gpus=sim.gpus,
            )
        return
    if claw_status(config) is not None:
        running = LoadTarget(configured_url(config), client_headers(config), f"the claw at {configured_url(config)}")
        yield Box(config.backends, config.agents, gateway=running, scraped=running)
        return
    if not need_gateway:
        yield Box(config.backends, config.agents)
        return
    with started_session(config, demo=False) as (session, problem):
        if session is None:
            yield Box(config.backends, config.agents, problems=[problem])
            return
        where = f"a gateway claw doctor started (no claw runs at {configured_url(config)})"
        yield Box(
            config.backends,
            config.agents,
            gateway=LoadTarget(session.gateway_url, session.gateway_headers(), where),
        )


@contextmanager
def started_session(config: Config, *, demo: bool) -> Iterator[tuple[Session | None, str]]:
    from claw_tui.session import Session, SessionOptions, SessionThread

    # The load needs the gateway alone: no clock control, and no telemetry (the checks read the GPU themselves).
    governor = dataclasses.replace(config.governor, enabled=False, allow_clock_control=False)
    telemetry = config.telemetry if demo else dataclasses.replace(config.telemetry, source="none")
    options = SessionOptions(demo=demo, listen=("127.0.0.1", 0), use_store=False)
    runner = SessionThread(Session(dataclasses.replace(config, governor=governor, telemetry=telemetry), options))
    try:
        runner.start()
    except Exception as exc:
        yield None, f"cannot start a gateway to check: {exc}"
        return
    try:
        yield runner.session, ""
    finally:
        runner.stop()
