"""`claw serve`: the headless face — gateway, telemetry and ledger, logging to stderr, for systemd."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from claw_tui.commands.common import (
    add_common_options,
    load_config_or_exit,
    parse_listen,
)
from claw_tui.gateway.policies import UnsafeListenError
from claw_tui.httpserver import PortInUseError

log = logging.getLogger("claw.serve")


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="run the gateway headless (for systemd)")
    add_common_options(parser)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--listen", type=parse_listen, metavar="HOST:PORT", help="listen address")
    where.add_argument("--port", type=int, metavar="N", help="listen on 127.0.0.1:N (or the configured host)")
    parser.add_argument(
        "--replay", metavar="FILE", default=argparse.SUPPRESS, help="use a recorded GPU trace as the telemetry source"
    )
    parser.add_argument("--sim-speed", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.set_defaults(run=run_serve)


def listen_address(args, config) -> tuple[str, int]:
    if args.listen:
        return args.listen
    host, port = config.gateway.host_port()
    return (host, args.port) if args.port is not None else (host, port)


def run_serve(args) -> int:
    config = load_config_or_exit(args)
    from claw_tui.runtime import run

    try:
        return run(serve(args, config))
    except (PortInUseError, UnsafeListenError) as exc:
        print(f"claw: {exc}", file=sys.stderr)
        return 1


async def serve(args, config) -> int:
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
