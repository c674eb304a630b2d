"""`claw serve`: the headless face — gateway, telemetry and ledger, logging to stderr, for systemd."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from claw_tui.commands.common import (
    add_common_options,
    load_config_or_exit,
    parse_listen,
)
from claw_tui.config import Config
from claw_tui.gateway.policies import UnsafeListenError
from claw_tui.httpserver import PortInUseError

log = logging.getLogger("claw.serve")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("serve", help="run the gateway headless (for systemd)")
    add_common_options(parser)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--listen", type=parse_listen, metavar="HOST:PORT", help="listen address")
    where.add_argument("--port", type=int, metavar="N", help="listen on 127.0.0.1:N (or the configured host)")
    parser.add_argument(
        "--replay", metavar="FILE", default=argparse.SUPPRESS, help="use a recorded GPU trace as the telemetry source"
    )
    parser.add_argument("--sim-speed", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--print-systemd-unit",
        action="store_true",
        help="print a systemd unit that runs this service (save it as /etc/systemd/system/claw.service)",
    )
    parser.set_defaults(run=run_serve)


def listen_address(args: argparse.Namespace, config: Config) -> tuple[str, int]:
    if args.listen:
        listen: tuple[str, int] = args.listen
        return listen
    host, port = config.gateway.host_port()
    return (host, args.port) if args.port is not None else (host, port)


def systemd_unit(args: argparse.Namespace, config_path: Path) -> str:
    """A unit that runs `claw serve` as the current user with this config, restarted when it fails."""
    import getpass
    import shlex

    command = [sys.executable, "-m", "claw_tui", "--config", str(config_path), "serve"]
    if args.listen:
        command += ["--listen", f"{args.listen[0]}:{args.listen[1]}"]
    elif args.port is not None:
        command += ["--port", str(args.port)]
    return f"""[Unit]
Description=claw: metered LLM gateway, GPU telemetry and idle governor
After=network-online.target ollama.service
Wants=network-online.target

[Service]
Type=simple
User={getpass.getuser()}
ExecStart={shlex.join(command)}
Restart=on-failure
RestartSec=2
# one file descriptor per client connection and per upstream stream
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""


def run_serve(args: argparse.Namespace) -> int:
    if args.print_systemd_unit:
        from claw_tui.config import resolve_config_path

        path = resolve_config_path(getattr(args, "config", None)).expanduser().resolve()
        print(systemd_unit(args, path), end="")
        return 0
    config = load_config_or_exit(args, runs_session=True)
    from claw_tui.runtime import run

    try:
        return run(serve(args, config))
    except (PortInUseError, UnsafeListenError) as exc:
        print(f"claw: {exc}", file=sys.stderr)
        return 1


async def serve(args: argparse.Namespace, config: Config) -> int:
    from claw_tui.runtime import freeze_startup_heap
    from claw_tui.session import Session, SessionOptions

    options = SessionOptions(
        demo=args.demo,
        replay_path=getattr(args, "replay", None),
        listen=listen_address(args, config),
        sim_speed=args.sim_speed,
    )
    session = Session(config, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await session.start()
    freeze_startup_heap()
    try:
        for notice in session.notices:
            log.warning("%s", notice)
        mode = " (demo: simulated GPU and Ollama)" if session.demo else ""
        log.info("claw gateway on %s%s; session %s", session.gateway_url, mode, session.id)
        print(f"claw: gateway listening on {session.gateway_url}", file=sys.stderr, flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        await session.stop()
    log.info("stopped cleanly")
    return 0
