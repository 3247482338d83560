"""Token counting for estimates, with tiktoken and no network.

tiktoken downloads its vocabularies on first use; finops must work offline, so the encodings are built
from the vocabularies the `bpe-openai` package ships (gzipped `.tiktoken` files, byte-identical to
OpenAI's once unzipped: we check tiktoken's own expected SHA-256). The regex and special tokens come
from tiktoken's own definitions in `tiktoken_ext.openai_public`, whose download is swapped for a local
read while they are evaluated.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources

import tiktoken
from tiktoken.model import encoding_name_for_model
from tiktoken_ext import openai_public

# Models outside OpenAI's tokenizers (Claude, Gemini, Llama...) are estimated with this encoding.
ESTIMATE_ENCODING = "o200k_base"
# The encodings whose vocabulary file is shipped locally (o200k_harmony is o200k_base's vocabulary).
_VOCABULARY_OF_ENCODING = {
    "cl100k_base": "cl100k_base",
    "o200k_base": "o200k_base",
    "o200k_harmony": "o200k_base",
}
_definition_lock = threading.Lock()


class VocabularyError(RuntimeError):
    pass


def _local_mergeable_ranks(tiktoken_bpe_file: str, expected_hash: str | None = None) -> dict[bytes, int]:
    """Stands in for tiktoken.load.load_tiktoken_bpe: same result, read from bpe-openai's data."""
    stem = tiktoken_bpe_file.rsplit("/", 1)[-1].removesuffix(".tiktoken")
    resource = resources.files("bpe_openai.data").joinpath(f"{stem}.tiktoken.gz")
    if not resource.is_file():
        raise VocabularyError(f"no local vocabulary for {stem}: bpe-openai ships cl100k_base and o200k_base")
    contents = gzip.decompress(resource.read_bytes())
    if expected_hash and hashlib.sha256(contents).hexdigest() != expected_hash:
        raise VocabularyError(
            f"bpe-openai's {stem} vocabulary does not match tiktoken's expected hash; "
            "reinstall bpe-openai or pin a version whose data matches"
        )
    ranks: dict[bytes, int] = {}
    for line in contents.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@cache
def encoding_get(*, name: str) -> tiktoken.Encoding:
    """A tiktoken Encoding built from local files only (cached: building o200k takes about a second)."""
    if name not in _VOCABULARY_OF_ENCODING:
        raise VocabularyError(
            f"encoding {name!r} is not available offline; use one of {sorted(_VOCABULARY_OF_ENCODING)}"
        )
    constructor = openai_public.ENCODING_CONSTRUCTORS[name]
    with _definition_lock:
        downloader = openai_public.load_tiktoken_bpe
        openai_public.load_tiktoken_bpe = _local_mergeable_ranks
        try:
            definition = constructor()
        finally:
            openai_public.load_tiktoken_bpe = downloader
    return tiktoken.Encoding(
        name=definition["name"],
        pat_str=definition["pat_str"],
        mergeable_ranks=definition["mergeable_ranks"],
        special_tokens=definition["special_tokens"],
        explicit_n_vocab=definition.get("explicit_n_vocab"),
    )


@dataclass(frozen=True, slots=True)
class EncodingChoice:
    encoding_name: str
    exact: bool  # False: the model is not tokenized by this encoding, the count is an estimate
    note: str = ""


def encoding_choose(*, model: str) -> EncodingChoice:
    """The encoding tiktoken.encoding_for_model would pick, or o200k_base as an estimate for others."""
    candidates = [model, model.rsplit("/", 1)[-1]] if "/" in model else [model]
    for candidate in candidates:
        try:
            name = encoding_name_for_model(candidate)
        except KeyError:
            continue
        if name in _VOCABULARY_OF_ENCODING:
            return EncodingChoice(encoding_name=name, exact=True)
        return EncodingChoice(
            encoding_name=ESTIMATE_ENCODING,
            exact=False,
            note=f"{model} uses {name}, which is not available offline; {ESTIMATE_ENCODING} gives an estimate",
        )
    return EncodingChoice(
        encoding_name=ESTIMATE_ENCODING,
        exact=False,
        note=(
            f"{model} is not an OpenAI model: {ESTIMATE_ENCODING} gives an estimate, "
            "its provider's own tokenizer may count somewhat differently"
        ),
    )


@dataclass(frozen=True, slots=True)
class TokenCount:
    tokens: int
    encoding_name: str
    exact: bool
    note: str


def tokens_count(*, text: str, model: str) -> TokenCount:
    """Count the tokens of a text as `model` would see it (special-token strings count as plain text)."""
    choice = encoding_choose(model=model)
    encoding = encoding_get(name=choice.encoding_name)
    count = len(encoding.encode(text, disallowed_special=()))
    return TokenCount(tokens=count, encoding_name=choice.encoding_name, exact=choice.exact, note=choice.note)


def catalog_provider_for_model(*, model: str) -> str | None:
    """The provider the genai-prices catalog associates with a bare model name (claude-* → anthropic)."""
    from genai_prices import data_snapshot

    try:
        provider, _ = data_snapshot.get_snapshot().find_provider_model(model, None, None, None)
    except LookupError:
        return None
    return provider.id
