"""A local stand-in for the provider report APIs: a real HTTP server answering in their documented shapes.

It holds a list of daily buckets, answers the buckets that start in the requested range, three per
page (whatever `limit` says, so paging is exercised), and can be told to fail the next requests of a
page with a status (429, 500, 401) or by dropping the connection.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from ingest.connectors.services import connector_create

BUCKETS_PER_FAKE_PAGE = 3
DAY = timedelta(days=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Failure:
    status: int | None  # None: drop the connection without an answer
    headers: dict[str, str] = field(default_factory=dict)
    body: dict | None = None


@dataclass
class SeenRequest:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class FakeProvider:
    """Serves one report: `style` is "openai" (unix seconds) or "anthropic" (RFC 3339)."""

    def __init__(self) -> None:
        self.style = "openai"
        self.path = ""
        self.buckets: list[tuple[datetime, list[dict]]] = []
        self.failures: dict[int, list[Failure]] = {}  # page number (1-based) -> failures, used in order
        self.requests: list[SeenRequest] = []
        self.lock = threading.Lock()
        self.base_url = ""

    def serve(self, *, style: str, path: str, buckets: list[tuple[datetime, list[dict]]]) -> None:
        self.style, self.path, self.buckets = style, path, buckets

    def fail_page(self, page_number: int, *failures: Failure) -> None:
        self.failures.setdefault(page_number, []).extend(failures)

    def requests_for_page(self, page_number: int) -> list[SeenRequest]:
        offset = str((page_number - 1) * BUCKETS_PER_FAKE_PAGE)
        return [seen for seen in self.requests if seen.query.get("page", ["0"])[0] == offset]

    def answer(self, *, path: str, query: dict[str, list[str]], headers: dict[str, str]):
        with self.lock:
            self.requests.append(SeenRequest(path=path, query=query, headers=headers))
            if path != self.path:
                return Failure(status=404, body={"error": {"message": f"no route {path}"}})
            offset = int(query.get("page", ["0"])[0])
            page_number = offset // BUCKETS_PER_FAKE_PAGE + 1
            pending = self.failures.get(page_number)
            if pending:
                return pending.pop(0)
            if self.style == "openai":
                start = datetime.fromtimestamp(int(query["start_time"][0]), UTC)
                end = datetime.fromtimestamp(int(query["end_time"][0]), UTC)
            else:
                start = datetime.fromisoformat(query["starting_at"][0].replace("Z", "+00:00"))
                end = datetime.fromisoformat(query["ending_at"][0].replace("Z", "+00:00"))
            in_range = [(day, results) for day, results in self.buckets if start <= day < end]
            chunk = in_range[offset : offset + BUCKETS_PER_FAKE_PAGE]
            has_more = offset + BUCKETS_PER_FAKE_PAGE < len(in_range)
            return self._document(chunk, has_more=has_more, next_offset=offset + BUCKETS_PER_FAKE_PAGE)

    def _document(self, chunk, *, has_more: bool, next_offset: int) -> dict:
        next_page = str(next_offset) if has_more else None
        if self.style == "openai":
            return {
                "object": "page",
                "data": [
                    {
                        "object": "bucket",
                        "start_time": unix(day),
                        "end_time": unix(day + DAY),
                        "results": results,
                    }
                    for day, results in chunk
                ],
                "has_more": has_more,
                "next_page": next_page,
            }
        return {
            "data": [
                {"starting_at": rfc3339(day), "ending_at": rfc3339(day + DAY), "results": results}
                for day, results in chunk
            ],
            "has_more": has_more,
            "next_page": next_page,
        }


def _handler_for(provider: FakeProvider):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            url = urlparse(self.path)
            answer = provider.answer(
                path=url.path,
                query=parse_qs(url.query),
                headers={k.lower(): v for k, v in self.headers.items()},
            )
            if isinstance(answer, Failure) and answer.status is None:
                self.close_connection = True  # hang up without a word: the client sees a dropped connection
                return
            status, headers, body = (
                (answer.status, answer.headers, answer.body or {})
                if isinstance(answer, Failure)
                else (200, {}, answer)
            )
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format, *args):  # keep the test output quiet
            pass

    return Handler


@pytest.fixture
def fake_provider():
    provider = FakeProvider()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(provider))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    provider.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield provider
    server.shutdown()
    server.server_close()


@pytest.fixture
def make_connector(db, fake_provider):
    def make(kind: str, *, pull_from: datetime, api_key: str = "sk-admin-test-key-0001"):
        return connector_create(
            kind=kind,
            name=f"{kind} test",
            credentials={"api_key": api_key},
            base_url=fake_provider.base_url,
            pull_from=pull_from,
        )

    return make


class SleepRecorder:
    """Stands in for time.sleep: remembers the waits, waits for nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def no_sleep() -> SleepRecorder:
    return SleepRecorder()
