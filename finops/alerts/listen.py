"""A webhook receiver for trying alerts out: `finops alerts listen --secret whsec_…` (or
`python -m finops.alerts.listen`) prints each delivery it receives and whether its Standard Webhooks
signature verifies, so a new user sees a signed alert arrive without a service of their own.
No Django: it is what a receiving service would run, with only the secret shared."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from finops.alerts.signing import WebhookVerificationError, webhook_secret_key, webhook_verify

MAX_BODY = 1 << 20


def delivery_line(payload: Any) -> str:
    """One line about a delivery's body (SPEC.md "Alerts": type, alert, rule, url)."""
    if not isinstance(payload, dict):
        return "a body that is not a JSON object"
    alert = payload.get("alert") if isinstance(payload.get("alert"), dict) else {}
    rule = payload.get("rule") if isinstance(payload.get("rule"), dict) else {}
    parts = [
        str(payload.get("type", "?")),
        f"rule {rule.get('name', alert.get('rule', '?'))!r}",
        str(alert.get("subject", "?")),
    ]
    if alert.get("value") is not None:
        op = {"gt": ">", "lt": "<"}.get(rule.get("op"), "vs")
        parts.append(f"value {alert['value']} {op} {alert.get('threshold')}")
    if payload.get("url"):
        parts.append(str(payload["url"]))
    return " · ".join(parts)


def listener(
    *,
    secret: str,
    port: int,
    host: str = "127.0.0.1",
    out: TextIO = sys.stdout,
    on_delivery: Callable | None = None,
) -> ThreadingHTTPServer:
    """A server (not yet serving) that verifies and prints each POST; 204 when it verifies, 401 saying
    why when it does not, 413 past 1 MiB. `on_delivery(headers, body, error)` sees each one (tests)."""
    webhook_secret_key(secret)  # a malformed secret fails here, not at the first delivery

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 — http.server's name
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            headers = {name: value for name, value in self.headers.items()}
            error = None
            try:
                webhook_verify(secret=secret, headers=headers, body=body)
            except WebhookVerificationError as refused:
                error = str(refused)
            when = time.strftime("%H:%M:%S")
            if error is None:
                try:
                    line = delivery_line(json.loads(body))
                except ValueError:
                    line = "a body that is not JSON"
                print(
                    f"{when}  ✓ signature verified  {self.headers.get('webhook-id')}  {line}", file=out, flush=True
                )
            else:
                print(f"{when}  ✗ refused: {error}", file=out, flush=True)
            if on_delivery:
                on_delivery(headers, body, error)
            self.send_response(204 if error is None else 401)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — quiet: we print our own
            return

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="finops alerts listen", description="print signed alert deliveries as they arrive"
    )
    parser.add_argument(
        "--secret", required=True, help="the channel's whsec_… secret, shown once at creation"
    )
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--host", default="127.0.0.1")
    options = parser.parse_args(argv)
    try:
        server = listener(secret=options.secret, port=options.port, host=options.host)
    except ValueError as error:
        parser.error(str(error))
    print(
        f"listening on http://{options.host}:{options.port}/ — a webhook channel with this target "
        "and secret delivers here (Ctrl-C stops)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
