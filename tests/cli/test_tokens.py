"""`finops tokens`: tiktoken counts with no network, checked against bpe-openai's independent tokenizer."""

from __future__ import annotations

import io
import re
import socket
import warnings
from decimal import Decimal

import pytest

from finops.pricing import tokenizer
from tests.cli.conftest import run_command

with warnings.catch_warnings():  # bpe-openai reads its data with a deprecated importlib call on import
    warnings.simplefilter("ignore", DeprecationWarning)
    import bpe_openai

TEXTS = [
    "hello world",
    "Hello, world! <|endoftext|> 12345 ümlaut 日本語のテキスト 🚀",
    "def area(radius: float) -> float:\n    return 3.14159 * radius ** 2\n\n\n",
    " " * 10 + "tabs\t\tand\r\nnewlines, URLs https://example.com/a?b=c and emails x@y.z",
    "The quick brown fox jumps over the lazy dog. " * 50,
]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No tiktoken cache and no network: any download attempt fails the test."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-tiktoken-cache"))

    def refuse(self, address):
        raise AssertionError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    tokenizer.encoding_get.cache_clear()
    yield
    tokenizer.encoding_get.cache_clear()


@pytest.mark.parametrize("encoding_name", ["o200k_base", "cl100k_base"])
def test_offline_encodings_agree_with_bpe_openai(offline, encoding_name):
    ours = tokenizer.encoding_get(name=encoding_name)
    reference = bpe_openai.get_encoding(encoding_name)

    for text in TEXTS:
        assert ours.encode_ordinary(text) == reference.encode_ordinary(text), text
    assert ours.n_vocab == reference.n_vocab


@pytest.mark.parametrize(
    ("model", "encoding_name", "exact"),
    [
        ("gpt-4o", "o200k_base", True),
        ("gpt-4.1-mini", "o200k_base", True),
        ("gpt-5", "o200k_base", True),
        ("o3", "o200k_base", True),
        ("gpt-4", "cl100k_base", True),
        ("gpt-3.5-turbo", "cl100k_base", True),
        ("claude-sonnet-4-5", "o200k_base", False),
        ("gemini-2.5-pro", "o200k_base", False),
    ],
)
def test_model_to_encoding_follows_tiktoken(offline, model, encoding_name, exact):
    counted = tokenizer.tokens_count(text=TEXTS[1], model=model)

    assert (counted.encoding_name, counted.exact) == (encoding_name, exact)
    assert counted.tokens == len(bpe_openai.get_encoding(encoding_name).encode_ordinary(TEXTS[1]))


def test_tokens_command_counts_a_file_and_prices_it(db, offline, tmp_path):
    text_file = tmp_path / "prompt.txt"
    text_file.write_text(TEXTS[4], encoding="utf-8")
    expected_tokens = len(bpe_openai.get_encoding("o200k_base").encode_ordinary(TEXTS[4]))

    ran = run_command("tokens", "--model", "gpt-4o", str(text_file))

    lines = ran.stdout.splitlines()
    assert lines[0] == f"tokens: {expected_tokens}"
    assert lines[1] == "encoding: o200k_base"
    cost = Decimal(re.search(r"estimated input cost: \$([0-9.]+)", lines[2]).group(1))
    assert cost == Decimal(expected_tokens) * Decimal("2.50") / 1_000_000  # gpt-4o input: $2.50/MTok


def test_tokens_command_reads_stdin_and_says_when_it_estimates(db, offline, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(TEXTS[2]))
    expected_tokens = len(bpe_openai.get_encoding("o200k_base").encode_ordinary(TEXTS[2]))

    ran = run_command("tokens", "--model", "claude-sonnet-4-5", "-")

    assert f"tokens: {expected_tokens}" in ran.stdout
    assert "estimate" in ran.stdout and "not an OpenAI model" in ran.stdout
    assert f"${Decimal(expected_tokens) * 3 / 1_000_000}" in ran.stdout  # Sonnet 4.5 input: $3/MTok


def test_tokens_command_for_an_unpriced_model(db, offline, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("hello world"))

    ran = run_command("tokens", "--model", "acme-large-2", "--provider", "acme")

    assert "tokens: 2" in ran.stdout
    assert "estimated input cost: unpriced" in ran.stdout


def test_tokens_as_a_real_process_without_network(finops_process, tmp_path):
    # an empty tiktoken cache, and every HTTP(S) request sent to a closed port: a download would fail
    no_network = {
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    done = finops_process("tokens", "--model", "gpt-4", stdin=TEXTS[0], env=no_network)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == ["tokens: 2", "encoding: cl100k_base"]
