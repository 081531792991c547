"""What the HTTP API answers when the database is the problem or cannot hold what was asked
for: a 503 that says whether the change may have committed, and 404 for a version no
definition can have, never a 500."""

from __future__ import annotations

from pathlib import Path

import httpx
import psycopg
import pytest
from databases import libpq_url, postgres_schema
from turnout_processes import definition_text, running_server, unique


def test_a_version_past_32_bits_is_not_found(api: httpx.Client) -> None:
    name = unique("counter")
    deployed = api.post("/api/definitions", content=definition_text("counter.yaml", name))
    assert deployed.status_code == 201, deployed.text
    for version in (2**31, 10**20):
        answer = api.get(f"/api/definitions/{name}", params={"version": version})
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] == "DefinitionNotFound"


@pytest.mark.postgres
def test_a_commit_lost_in_flight_is_503_saying_the_outcome_is_unknown(tmp_path: Path) -> None:
    """The server's connection is cut by the COMMIT itself; the answer says the change may
    have committed, and the retry with the same idempotency key applies it at most once."""
    with postgres_schema() as url, running_server(url, tmp_path) as server:
        with server.client() as client:
            deployed = client.post("/api/definitions", content=definition_text("counter.yaml"))
            assert deployed.status_code == 201, deployed.text
            started = client.post("/api/instances", json={"definition": "surface_counter"})
            instance_id = started.json()["id"]
            bump = {"event": "bump", "idempotency_key": "once"}
            with psycopg.connect(libpq_url(url), autocommit=True) as admin:
                cut_at_commit(admin)
                lost = client.post(f"/api/instances/{instance_id}/events", json=bump)
                admin.execute("DROP TRIGGER cut_here ON turnout_idempotency")
            assert lost.status_code == 503, lost.text
            assert lost.json()["outcome_unknown"] is True
            assert "the change may have committed" in lost.json()["message"]
            retried = client.post(f"/api/instances/{instance_id}/events", json=bump)
            again = client.post(f"/api/instances/{instance_id}/events", json=bump)
            assert retried.json()["context"] == again.json()["context"] == {"count": 1}


def cut_at_commit(admin: psycopg.Connection[tuple[object, ...]]) -> None:
    """A deferred trigger on the idempotency table: the COMMIT that runs it ends its own
    connection, as a server going away in that instant would."""
    admin.execute(
        "CREATE FUNCTION cut_here() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); "
        "RETURN NULL; END $$"
    )
    admin.execute(
        "CREATE CONSTRAINT TRIGGER cut_here AFTER INSERT ON turnout_idempotency "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cut_here()"
    )
