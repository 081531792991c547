"""The dashboard's links: `href` encodes what it is given, and the list pages build every link
with it, so a key with spaces, `&`, `/`, `#` or Unicode comes back as it was written."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from engine.api.links import href

TEMPLATES = Path(__file__).parents[2] / "engine" / "api" / "templates"
# The pages whose links are checked: each link with a value in it goes through href.
LIST_TEMPLATES = (
    "home.html",
    "definition.html",
    "instances.html",
    "rows.html",
    "ids.html",
    "diff.html",
    "migrate.html",
    "schedules.html",
)
AWKWARD = ["a b", "a&b=c", "a/b", "a#b", "a?b", "100%", "ünï €", "a+b", "日本", "x\u00a0y", "'\"<>"]


@pytest.mark.parametrize("key", AWKWARD)
def test_a_query_value_comes_back_as_it_was(key: str) -> None:
    link = href("/instances", definition="door", q=key)
    parts = urlsplit(link)
    assert parts.path == "/instances" and parts.fragment == ""
    assert parse_qs(parts.query, keep_blank_values=True) == {"definition": ["door"], "q": [key]}


@pytest.mark.parametrize("value", AWKWARD)
def test_a_path_segment_stays_one_segment(value: str) -> None:
    link = href("/definitions", value, "diff", query={"from": 1})
    parts = urlsplit(link)
    assert parts.fragment == "" and parts.query == "from=1"
    assert parts.path.count("/") == 3
    assert unquote(parts.path.split("/")[2]) == value


def test_empty_values_are_left_out_and_a_bare_path_has_no_query() -> None:
    assert href("/instances", definition="", state=None, q="k") == "/instances?q=k"
    assert href("/instances") == "/instances"
    assert href("/instances", "0190abc") == "/instances/0190abc"
    assert href("/api/definitions", "door", "diagram.svg", heat=1) == (
        "/api/definitions/door/diagram.svg?heat=1"
    )


@pytest.mark.parametrize("name", LIST_TEMPLATES)
def test_every_link_of_the_list_pages_with_a_value_is_built_by_href(name: str) -> None:
    text = (TEMPLATES / name).read_text()
    attributes = re.findall(r'\b(?:href|src|action)="([^"]*)"', text)
    built = [value for value in attributes if "{{" in value]
    assert built, f"{name} builds links"
    by_hand = [
        value
        for value in built
        if not re.fullmatch(
            r"\{\{ ?(href\(.*\)|h\.link|first|previous|next) ?\}\}(\?\{\{ again \}\})?", value
        )
    ]
    assert by_hand == []
