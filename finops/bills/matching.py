"""Which model a name means: a provider's aliases and dated snapshots are one model for reconciliation
(SPEC.md, "Bills": `claude-sonnet-4-5` = `claude-sonnet-4-5-20250929`).

The genai-prices catalog matches names to its models (finops.pricing.catalog.catalog_model, the same
matching the pricing uses); a name the catalog does not know is normalised by `model_normalise`:
lower case, without a trailing snapshot date (`-20250929`, `-2024-08-06`, `@20250929`) or `-latest`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from finops.pricing.catalog import catalog_model

SNAPSHOT_SUFFIX = re.compile(r"(?:[-@](?:\d{8}|\d{4}-\d{2}-\d{2}|latest))+$")


def model_normalise(name: str) -> str:
    return SNAPSHOT_SUFFIX.sub("", name.strip().lower())


@lru_cache(maxsize=4096)
def model_key(*, provider: str, model: str) -> str:
    """The name a provider's model is matched by: the catalog's model id, else the normalised name."""
    if not model:
        return ""
    entry = catalog_model(provider.lower(), model)
    return entry.model_id if entry is not None else model_normalise(model)
