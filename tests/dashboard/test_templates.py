"""Template comments: Django's `{# … #}` ends on its own line; one left open is printed on the page as
text (it was, on every report page, above the filters). Longer comments use {% comment %}."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted(
    path
    for folder in ("dashboard", "ingest", "finops")
    for path in (ROOT / folder).rglob("templates/**/*.html")
)


def test_there_are_templates_to_check():
    assert len(TEMPLATES) > 20


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_short_comment_closes_on_its_line(template):
    open_comments = [
        number
        for number, line in enumerate(template.read_text().splitlines(), start=1)
        if line.count("{#") != line.count("#}")
    ]
    assert open_comments == [], (
        f"{template.relative_to(ROOT)}: a {{# comment left open on lines {open_comments}"
    )


def test_the_filters_comment_is_not_on_the_page(client, django_user_model):
    user = django_user_model.objects.create_user(username="reader", password="a-long-test-password")
    client.force_login(user)
    page = client.get("/models/").content.decode()
    assert 'id="filter-start"' in page
    assert "{#" not in page and "The period presets" not in page
