"""The mapping a new installation starts with (migration 0002 loads it; the ml role edits it after).

Flagship: each provider's largest, dearest model of a generation, and the reasoning models priced like
them. Mid: the general-purpose workhorses. Small: the cheap, fast ones (haiku, mini, nano, flash-lite).
Names are the genai-prices catalog's model ids, so dated snapshots map through them. Every model of
the demo (`finops demo`) is here except `acme/acme-large-2`, which the catalog does not know either: it
shows as unmapped, as an ml engineer would find a new model.
"""

from __future__ import annotations

DEFAULT_TIERS: tuple[tuple[str, str, str], ...] = (
    # Anthropic
    ("anthropic", "claude-opus-4-5", "flagship"),
    ("anthropic", "claude-opus-4-1", "flagship"),
    ("anthropic", "claude-opus-4-0", "flagship"),
    ("anthropic", "claude-3-opus-latest", "flagship"),
    ("anthropic", "claude-sonnet-4-5", "mid"),
    ("anthropic", "claude-sonnet-4-0", "mid"),
    ("anthropic", "claude-3-7-sonnet-latest", "mid"),
    ("anthropic", "claude-3-5-sonnet", "mid"),
    ("anthropic", "claude-haiku-4-5", "small"),
    ("anthropic", "claude-3-5-haiku-latest", "small"),
    ("anthropic", "claude-3-haiku", "small"),
    # OpenAI
    ("openai", "gpt-5.1", "flagship"),
    ("openai", "gpt-5", "flagship"),
    ("openai", "o3-pro", "flagship"),
    ("openai", "o3", "flagship"),
    ("openai", "o1", "flagship"),
    ("openai", "gpt-4.1", "mid"),
    ("openai", "gpt-4o", "mid"),
    ("openai", "gpt-5-mini", "mid"),
    ("openai", "o4-mini", "mid"),
    ("openai", "o3-mini", "mid"),
    ("openai", "gpt-5-nano", "small"),
    ("openai", "gpt-4.1-mini", "small"),
    ("openai", "gpt-4.1-nano", "small"),
    ("openai", "gpt-4o-mini", "small"),
    # Google
    ("google", "gemini-2.5-pro", "flagship"),
    ("google", "gemini-2.5-flash", "mid"),
    ("google", "gemini-2.5-flash-lite", "small"),
)
