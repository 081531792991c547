"""Two deployed versions compared: what changed, where the unfinished instances of the older
one are (each counted in every state it is in), and both drawn as one picture."""

from __future__ import annotations

from pathlib import Path

import pytest

import statemachines
from engine import DefinitionNotFound, Engine, VersionDiff

SHOP = Path(__file__).parent.parent / "statemachines" / "diffs"


def advance(engine: Engine, task: str, results: dict[str, object]) -> None:
    """Claim every ready `task` and answer those of the instances in `results`; the others
    stay claimed, their instances where they are."""
    for claimed in engine.claim_tasks([task], limit=100):
        if claimed.instance_id in results:
            engine.complete_task(claimed.id, None, results[claimed.instance_id])


@pytest.fixture
def shop(engine: Engine) -> dict[str, str]:
    """Instances of version 1 of the shop spread over its states, then version 2 deployed
    and one instance of it started. Gives the ids by where they are."""
    engine.deploy(SHOP / "shop_v1.yaml")
    names = ["paying", "reviewed", "packing", "labelled", "labelled_too", "delivering"]
    ids = {name: engine.start("shop", {"amount": 10}).id for name in names}
    cancelled = engine.start("shop", {"amount": 10}).id
    engine.cancel(cancelled)
    ok, not_ok = {"ok": True}, {"ok": False}
    onward = ["packing", "labelled", "labelled_too", "delivering"]
    advance(
        engine, "payments.charge", {ids[name]: ok for name in onward} | {ids["reviewed"]: not_ok}
    )
    advance(engine, "warehouse.pack", {ids[name]: {} for name in onward[1:]})
    advance(engine, "shipping.label", {ids["delivering"]: {}})
    assert engine.deploy(SHOP / "shop_v2.yaml").version == 2
    ids["new"] = engine.start("shop", {"amount": 10}).id
    return ids


def test_counts_are_of_the_old_versions_unfinished_instances_by_state(
    engine: Engine, shop: dict[str, str]
) -> None:
    assert engine.get(shop["delivering"]).active == [
        "deliver.notify.notify",
        "deliver.track.waiting",
    ]
    compared = engine.version_diff("shop", 1)
    assert isinstance(compared, VersionDiff)
    assert (compared.name, compared.from_version, compared.to_version) == ("shop", 1, 2)
    assert compared.counts == {
        "pay": 1,
        "review": 1,
        "shipping": 3,
        "shipping.packing": 1,
        "shipping.labelled": 2,
        "deliver": 1,  # once, though it is in both branches
        "deliver.notify.notify": 1,
        "deliver.track.waiting": 1,
    }
    assert engine.version_counts("shop", 1) == compared.counts
    assert engine.version_counts("shop", 2) == {"pay": 1}


def test_the_changes_are_the_diff_of_the_two_versions(engine: Engine, shop: dict[str, str]) -> None:
    compared = engine.version_diff("shop", 1, 2)
    expected = statemachines.diff_definitions(
        statemachines.load(SHOP / "shop_v1.yaml"), statemachines.load(SHOP / "shop_v2.yaml")
    )
    assert compared.changes == expected
    data = compared.to_json()
    assert (data["name"], data["from"], data["to"]) == ("shop", 1, 2)
    assert data["states"] == expected.to_json()["states"]
    assert data["counts"]["shipping.labelled"] == 2
    backwards = engine.version_diff("shop", 2, 1)
    assert backwards.changes.states_added == expected.states_removed
    assert backwards.counts == {"pay": 1}  # the one instance of version 2


def test_versions_are_listed_and_unknown_ones_refused(engine: Engine, shop: dict[str, str]) -> None:
    assert engine.versions("shop") == [1, 2]
    with pytest.raises(DefinitionNotFound):
        engine.versions("no_such_definition")
    with pytest.raises(DefinitionNotFound):
        engine.version_diff("shop", 3)
    with pytest.raises(DefinitionNotFound):
        engine.version_diff("shop", 1, 7)
    with pytest.raises(DefinitionNotFound):
        engine.diff_diagram("no_such_definition", 1)


def test_the_picture_shows_the_instances_left_in_a_removed_state(
    engine: Engine, shop: dict[str, str]
) -> None:
    svg = engine.diff_diagram("shop", 1).decode().replace("&#45;", "-")
    assert "shop: version 1 → version 2" in svg
    assert 'class="node state kind-task state-shipping.labelled diff-removed diff-stranded' in svg
    assert "⚠ 2 running in a removed state" in svg
    assert "diff-legend" in svg
    dot = engine.diff_diagram("shop", 1, 2, "dot").decode()
    assert "diff-added" in dot and "1 running" in dot
