"""`claw web [--listen HOST:PORT]`: the console in a browser, with textual-serve.

Each browser connection runs its own console process (`claw --connect …`), attached to the running `claw serve`:
the web face never starts a gateway of its own. Off loopback it asks for the service's token: open
`http://HOST:PORT/?token=T` once; the browser keeps a cookie for the page's websocket.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import shlex
import sys
from typing import TYPE_CHECKING

from claw_tui.commands.common import add_common_options, load_config_or_exit, parse_listen

DEFAULT_LISTEN = ("127.0.0.1", 18790)
COOKIE = "claw_web"
LOOPBACK = ("127.0.0.1", "::1", "localhost")

if TYPE_CHECKING:
    from aiohttp import web
    from aiohttp.typedefs import Handler, Middleware
    from textual_serve.server import Server


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("web", help="serve the console in a browser (attached to the running service)")
    add_common_options(parser)
    parser.add_argument(
        "--listen", type=parse_listen, metavar="HOST:PORT", default=DEFAULT_LISTEN, help="where the page is served"
    )
    parser.add_argument("--connect", metavar="URL", default=argparse.SUPPRESS, help="the claw service to attach to")
    parser.add_argument("--token", metavar="T", default=argparse.SUPPRESS, help="the service's token")
    parser.set_defaults(run=run_web)


def console_command(url: str) -> str:
    """What each browser connection runs: a console attached to the service (the token travels in the env)."""
    return f"{shlex.quote(sys.executable)} -m claw_tui --connect {shlex.quote(url)}"


def token_digest(token: str) -> str:
    return hashlib.sha256(f"claw-web:{token}".encode()).hexdigest()


def make_server(command: str, host: str, port: int, token: str | None) -> Server:
    """A textual-serve Server whose page and websocket ask for `token` (when one is given)."""
    from textual_serve.server import Server

    class ClawWebServer(Server):
        def initialize_logging(self) -> None:  # claw's own logging stays as configured
            return

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            if token:
                app.middlewares.append(token_middleware(token))
            return app

        async def on_startup(self, app: web.Application) -> None:
            print(f"claw: the console is served on {self.public_url}", file=sys.stderr, flush=True)

    display_host = f"[{host}]" if ":" in host else host
    return ClawWebServer(command, host=host, port=port, title="claw", public_url=f"http://{display_host}:{port}")


def token_middleware(token: str) -> Middleware:
    """The page, and its websocket, need the token: once as ?token=, then the cookie it sets."""
    from aiohttp import web

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        expected = token_digest(token)
        given = request.query.get("token")
        if given is not None and hmac.compare_digest(token_digest(given), expected):
            response = await handler(request)
            response.set_cookie(COOKIE, expected, httponly=True, samesite="Strict")
            return response
        if hmac.compare_digest(request.cookies.get(COOKIE, ""), expected) or request.path.startswith("/static/"):
            return await handler(request)
        return web.Response(
            status=401, text="claw web: open this page with ?token=<the service's token>\n", content_type="text/plain"
        )

    return require_token


def run_web(args: argparse.Namespace) -> int:
    from claw_tui.commands.tui import console_token, service_url
    from claw_tui.console.remote import NeedsToken, probe

    config = load_config_or_exit(args)
    url = getattr(args, "connect", None) or service_url(config)
    url = url if "://" in url else f"http://{url}"
    token = console_token(args, config)
    try:
        status = probe(url, token, timeout=5.0)
    except NeedsToken as exc:
        print(f"claw: {exc} (pass --token or set CLAW_TOKEN)", file=sys.stderr)
        return 1
    if status is None:
        print(
            f"claw: no claw service answers at {url}: start it first (`claw serve`); the web face only attaches",
            file=sys.stderr,
        )
        return 1
    host, port = args.listen
    if host not in LOOPBACK and not token:
        print(
            f"claw: refusing to serve the console on {host} without a token: give the service tokens in "
            "[gateway] tokens (or pass --token), or listen on 127.0.0.1",
            file=sys.stderr,
        )
        return 1
    if token:
        os.environ["CLAW_TOKEN"] = token  # the consoles read it; it never shows in a process list
    server = make_server(console_command(url), host, port, token if host not in LOOPBACK else None)
    try:
        server.serve()
    except OSError as exc:
        print(f"claw: cannot serve the console on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
