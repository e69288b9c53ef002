"""Consumers racing to create one new title on a PostgreSQL-backed Label Studio (docs/ROUTING.md).

PostgreSQL hands out a project's id when its INSERT starts and shows the row when it commits, so a
listing can show a newer project while an older id is still invisible. A trigger on Label Studio's
``project`` table makes the first create of the title hold its new id uncommitted for
``SLOW_CREATE_S`` (a slow disk or a busy database does the same, for less time); the second
consumer's create, a moment later, commits at once. Without the settle guard, the second consumer
settles on its own, newer project, while the first ends on the older one: the title's runs are
split over two projects, or lost when a cleanup deletes the newer copy after the listing that
called it empty. With ``INGEST_PROJECT_SETTLE_S`` above the slow create, both end on one project.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from label_studio_sdk.core.api_error import ApiError

from labelstudio_ingest.consumer.embedded import Postgres
from labelstudio_ingest.schemas import Target
from tests.consumer.runner import Rig, eventually, prompt_event, run_ids_of
from tests.harness import LabelStudioServer

pytestmark = pytest.mark.integration

SLOW_CREATE_S = 2.0
"""How long the first create of the title keeps its new id uncommitted."""
SETTLE_S = 3.0
"""The consumers' INGEST_PROJECT_SETTLE_S: longer than the slow create."""
MAX_POLL_INTERVAL_MS = 15_000
"""Room for a slow create plus the settle wait between two polls (the harness default is 5 s)."""

SLOW_FIRST_CREATE = """
CREATE TABLE IF NOT EXISTS lsi_slow_create (title text PRIMARY KEY, seconds float8 NOT NULL);
CREATE OR REPLACE FUNCTION lsi_slow_create() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  wait float8;
BEGIN
  -- The first INSERT of an armed title takes the flag (SKIP LOCKED: later ones never wait for it)
  -- and sleeps inside its transaction, holding its new id uncommitted.
  DELETE FROM lsi_slow_create WHERE ctid = (
    SELECT ctid FROM lsi_slow_create WHERE title = NEW.title FOR UPDATE SKIP LOCKED
  ) RETURNING seconds INTO wait;
  IF wait IS NOT NULL THEN
    PERFORM pg_sleep(wait);
  END IF;
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS lsi_slow_create ON project;
CREATE TRIGGER lsi_slow_create AFTER INSERT ON project FOR EACH ROW EXECUTE FUNCTION lsi_slow_create();
"""


@pytest.fixture
def database(label_studio: LabelStudioServer) -> Iterator[Postgres]:
    """The PostgreSQL database of the session's Label Studio, with the slow-first-create trigger."""
    if label_studio.database is None:
        pytest.skip("needs the PostgreSQL-backed Label Studio the harness starts (not SQLite, not external)")
    label_studio.database.psql(SLOW_FIRST_CREATE)
    yield label_studio.database
    label_studio.database.psql("DROP TRIGGER IF EXISTS lsi_slow_create ON project")


def _runs_by_project(client: Any, title: str) -> dict[int, list[str]]:
    projects = [p for p in client.projects.list(title=title, page_size=100) if p.title == title]
    return {p.id: sorted(run_ids_of(client, p.id)) for p in projects}


def test_consumers_racing_to_create_a_title_end_in_one_project_with_every_run(
    rig: Rig, kafka_topic: Any, database: Postgres
) -> None:
    title = f"it-race-{uuid.uuid4().hex[:12]}"
    target = Target(project_name=title)
    other_topic = kafka_topic(partitions=1)
    settings = {
        "INGEST_PROJECT_SETTLE_S": str(SETTLE_S),
        "INGEST_MAX_POLL_INTERVAL_MS": str(MAX_POLL_INTERVAL_MS),
    }
    first = rig.consumer("first", **settings).start()
    second = rig.consumer("second", topic=other_topic, **settings).start()
    try:
        first.wait_ready()
        second.wait_ready()
        database.psql(f"INSERT INTO lsi_slow_create VALUES ('{title}', {SLOW_CREATE_S})")
        runs = [prompt_event(target=target), prompt_event(target=target)]
        rig.publisher.events(rig.topic, runs[:1])
        rig.publisher.events(other_topic, runs[1:])
        expected = sorted(str(run.run_id) for run in runs)

        def both_runs_imported() -> dict[int, list[str]] | None:
            try:
                found = _runs_by_project(rig.ls_client, title)
            except ApiError:  # a duplicate deleted between the listing and the look at its tasks
                return None
            return found if sum(len(r) for r in found.values()) == len(runs) else None

        found = eventually(both_runs_imported, timeout=90, message="both runs imported (none lost)")
        assert list(found.values()) == [expected], f"the title's runs are split: {found}"
    finally:
        first.kill()
        second.kill()
