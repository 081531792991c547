"""`turnout simulate` into a pipe writes its table without importing rich: the lines
`language.plain_table` writes are the ones rich draws, whatever the cells, or it leaves the
drawing to rich."""

from __future__ import annotations

import io
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from engine.cli.language import plain_table

HEADER = ("#", "event", "from", "to")
# Mostly names as definitions spell them; now and then any text, which rich may draw otherwise.
NAMES = st.from_regex(r"[a-zA-Z0-9_.:() -]{0,14}", fullmatch=True) | st.text(
    alphabet=st.characters(max_codepoint=0x17F), max_size=4
)
ROWS = st.lists(st.tuples(NAMES, NAMES, NAMES), min_size=1, max_size=5)


def drawn_by_rich(title: str, rows: Sequence[tuple[str, ...]]) -> list[str]:
    """The lines rich writes for the table on a console that is not a terminal, as wide as
    the table (as `print_table` makes it)."""
    table = Table(*HEADER, title=title)
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=1_000, force_terminal=False).print(table)
    return buffer.getvalue().splitlines()


def test_the_lines_of_a_simulated_path_are_richs() -> None:
    rows = [("1", "", "(start)", "closed"), ("2", "lock", "closed", "locked")]
    for title in ("door: simulated path", "a_door: simulated path"):
        assert plain_table(title, HEADER, rows) == drawn_by_rich(title, rows)
    # A title wider than the table is wrapped by rich: rich draws it.
    assert plain_table("x" * 44, HEADER, rows) is None


@settings(max_examples=300, deadline=None)
@given(name=NAMES, steps=ROWS)
def test_plain_table_is_richs_drawing_or_none(name: str, steps: list[tuple[str, ...]]) -> None:
    title = f"{name}: simulated path"
    rows = [(str(number), *step) for number, step in enumerate(steps, 1)]
    lines = plain_table(title, HEADER, rows)
    if lines is not None:
        assert lines == drawn_by_rich(title, rows)
