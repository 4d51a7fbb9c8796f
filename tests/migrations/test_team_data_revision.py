"""Revision 0002 (team data) on a database at 0001 with the demo team in it: every row is kept,
stays active, and each engineer's memberships start as their one group."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlmodel import Session, select

from itilflow.models import ConfigurationItem, Engineer, Group, get_engine
from itilflow.models.migrations import (
    _migrating,
    alembic_config,
    current_revision,
    upgrade_database,
)
from itilflow.services.directory import Record, save_records

BASELINE_ROWS = [
    """INSERT INTO "group" (name, lead, manager, email) VALUES
       ('dba', 'sun', 'zhou', 'dba@example.com'), ('network', 'zhao', 'zhou', NULL)""",
    """INSERT INTO engineer (username, name, email, group_name, skills, capacity, on_duty, language)
       VALUES ('sun', 'Sun Hao', 'sun@example.com', 'dba', '["database"]', 4, true, 'zh_CN'),
              ('zhao', 'Zhao Min', NULL, 'network', '[]', 5, false, NULL)""",
    """INSERT INTO configurationitem (name, kind, criticality, owner_group, attributes)
       VALUES ('erp-db-01', 'database', 'high', 'dba', '{"rack": "A3"}')""",
]


def test_a_database_at_0001_with_people_upgrades_keeping_them(
    empty_database: Callable[[], str],
) -> None:
    from alembic import command

    engine = get_engine(empty_database())
    with _migrating(engine) as connection:
        command.upgrade(alembic_config(connection=connection), "0001")
    with engine.begin() as connection:
        for statement in BASELINE_ROWS:
            connection.execute(text(statement))

    with _migrating(engine) as connection:
        command.upgrade(alembic_config(connection=connection), "0002")

    assert current_revision(engine) == "0002"
    # The models are the head's (0015 adds CI columns): read 0002's rows through them after the
    # later revisions, which keep every row as it is.
    upgrade_database(engine)
    with Session(engine) as session:
        sun = session.get(Engineer, "sun")
        assert sun is not None
        assert (sun.name, sun.email, sun.skills, sun.capacity, sun.language) == (
            "Sun Hao",
            "sun@example.com",
            ["database"],
            4,
            "zh_CN",
        )
        assert sun.active and sun.groups == ["dba"] and sun.memberships() == ["dba"]
        zhao = session.get(Engineer, "zhao")
        assert zhao is not None and zhao.on_duty is False and zhao.groups == ["network"]
        groups = {g.name: g for g in session.exec(select(Group))}
        assert groups["dba"].email == "dba@example.com" and groups["dba"].lead == "sun"
        assert all(g.active and g.escalation_contacts == [] for g in groups.values())
        erp = session.get(ConfigurationItem, "erp-db-01")
        assert erp is not None and erp.attributes == {"rack": "A3"}
        assert erp.active and erp.depends_on == [] and erp.environment is None

        # The upgraded rows take the new fields through the same path as any other write.
        save_records(
            session,
            [Record("people", {"username": "zhao", "groups": ["network", "dba"], "phone": "110"})],
        )
        session.commit()
    with Session(engine) as session:
        zhao = session.get(Engineer, "zhao")
        assert zhao is not None and zhao.memberships() == ["network", "dba"] and zhao.phone == "110"
