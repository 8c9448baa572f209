"""`syncd minds link` (issue 18, item 2): a signed-in user is linked to the mind their courses
are created as, with the admin URL, instead of hand-written SQL against auth.users and
user_profiles. Then, through the impersonation of tests/test_rls.py, each user reads the
courses of their own mind and no other. On plain PostgreSQL and on the Supabase-shaped
PostgreSQL 15 and 16 (where the link runs as the demoted ``postgres``)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Target
from tests.helpers import EXAMPLES, Run, run_cli, write
from tests.test_rls import acting, login_writer

CONFIG, FATAL_DB = 2, 4


def sign_up(admin_dsn: str, *emails: str) -> dict[str, uuid.UUID]:
    users = {email.split("@")[0]: uuid.uuid4() for email in emails}
    with psycopg.connect(admin_dsn) as conn:
        for email in emails:
            conn.execute(
                "insert into auth.users (id, email) values (%s, %s)",
                (users[email.split("@")[0]], email),
            )
    return users


def projects_read_by(admin_dsn: str, user: uuid.UUID) -> set[str]:
    with psycopg.connect(admin_dsn, autocommit=True) as conn, acting(conn, "authenticated", user):
        return {slug for (slug,) in conn.execute("select slug from public.content_projects")}


def profile(admin_dsn: str, user: uuid.UUID) -> str | None:
    with psycopg.connect(admin_dsn) as conn:
        row = conn.execute(
            "select m.slug from public.user_profiles p join public.minds m on m.id = p.mind_id"
            " where p.id = %s",
            (user,),
        ).fetchone()
    return None if row is None else str(row[0])


@pytest.fixture
def synced(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_target: Target
) -> tuple[Target, Path, dict[str, uuid.UUID]]:
    """The examples synced by a login syncd_writer with a default creator mind; ana, bia
    and ze signed up (auth.users), linked to nothing yet."""
    root = tmp_path / "courses"
    shutil.copytree(EXAMPLES, root)
    writer = login_writer(db_target)
    done = run_cli(
        capsys, ["--rescan", "--root", str(root)], writer, {"SYNCD_CREATOR_MIND": "bia_lima"}
    )
    assert done.code == 0, done.stderr
    users = sign_up(db_target.admin_dsn, "ana@example.com", "Bia@Example.com", "ze@example.com")
    return db_target, root, users


def link(capsys: pytest.CaptureFixture[str], dsn: str, user: str, mind: str, *extra: str) -> Run:
    return run_cli(capsys, ["minds", "link", "--user", user, "--mind", mind, *extra], dsn)


def test_each_linked_user_reads_their_own_courses_and_no_one_elses(
    capsys: pytest.CaptureFixture[str], synced: tuple[Target, Path, dict[str, uuid.UUID]]
) -> None:
    target, _root, users = synced
    admin = target.admin_dsn
    assert all(projects_read_by(admin, user) == set() for user in users.values())  # the report

    by_email = link(capsys, target.owner_dsn, "ana@example.com", "ana_souza")
    by_id = link(capsys, target.owner_dsn, str(users["Bia"]), "bia_lima")

    assert by_email.code == 0, by_email.stderr
    assert by_id.code == 0, by_id.stderr
    assert "ana@example.com" in by_email.stdout and "ana_souza" in by_email.stdout
    assert (profile(admin, users["ana"]), profile(admin, users["Bia"])) == ("ana_souza", "bia_lima")
    assert projects_read_by(admin, users["ana"]) == {"python-em-30-dias"}
    assert projects_read_by(admin, users["Bia"]) == {"escrita-criativa"}
    assert projects_read_by(admin, users["ze"]) == set()

    listed = run_cli(capsys, ["minds"], target.owner_dsn)
    assert listed.code == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[2:] if line.strip()}
    assert "ana@example.com" in lines["ana_souza"] and "python-em-30-dias" in lines["ana_souza"]
    assert (
        "bia@example.com" in lines["bia_lima"].lower() and "escrita-criativa" in lines["bia_lima"]
    )

    again = link(capsys, target.owner_dsn, "ANA@example.com", "ana_souza")  # e-mail any case
    assert again.code == 0 and "already" in again.stdout, again.stdout + again.stderr


def test_a_mind_is_created_when_missing_and_the_briefs_courses_find_it(
    capsys: pytest.CaptureFixture[str], synced: tuple[Target, Path, dict[str, uuid.UUID]]
) -> None:
    """Linked before the creator's first course exists: the mind is made by the link, and the
    course synced later is that mind's (one mind, not two)."""
    target, root, users = synced
    done = link(capsys, target.owner_dsn, "ze@example.com", "ze_novo")
    assert done.code == 0, done.stderr
    assert "created" in done.stdout
    write(root / "novo" / "COURSE-BRIEF.md", "---\ncreator_mind: ze_novo\n---\n# Curso Novo\n")
    write(root / "novo" / "lessons" / "1.1-a.md", "# A\n\nText.\n")
    rescan = run_cli(capsys, ["--rescan", "--root", str(root)], login_writer(target))
    assert rescan.code == 0, rescan.stderr
    with psycopg.connect(target.admin_dsn) as conn:
        assert conn.execute(
            "select count(*) from public.minds where slug = 'ze_novo'"
        ).fetchone() == (1,)
    assert projects_read_by(target.admin_dsn, users["ze"]) == {"novo"}


def test_relinking_moves_the_user_and_says_from_where(
    capsys: pytest.CaptureFixture[str], synced: tuple[Target, Path, dict[str, uuid.UUID]]
) -> None:
    target, _root, users = synced
    assert link(capsys, target.owner_dsn, "ana@example.com", "bia_lima").code == 0
    moved = link(capsys, target.owner_dsn, "ana@example.com", "ana_souza")
    assert moved.code == 0, moved.stderr
    assert "bia_lima" in moved.stdout  # where the user was
    assert projects_read_by(target.admin_dsn, users["ana"]) == {"python-em-30-dias"}


def test_what_cannot_be_linked_is_refused_and_named(
    capsys: pytest.CaptureFixture[str], synced: tuple[Target, Path, dict[str, uuid.UUID]]
) -> None:
    target, _root, users = synced
    owner = target.owner_dsn
    assert link(capsys, owner, "ana@example.com", "ana_souza").code == 0

    taken = link(capsys, owner, "ze@example.com", "ana_souza")
    assert taken.code == CONFIG
    assert "ana@example.com" in taken.named("configuration error")[0]["reason"]
    assert profile(target.admin_dsn, users["ze"]) is None

    nobody = link(capsys, owner, "nobody@example.com", "x_mind")
    assert nobody.code == CONFIG
    assert "nobody@example.com" in nobody.named("configuration error")[0]["reason"]

    bad = link(capsys, owner, "ze@example.com", "Not A Slug!")
    assert bad.code == CONFIG
    assert "mind slug" in bad.named("configuration error")[0]["reason"]

    with psycopg.connect(target.admin_dsn) as conn:
        assert conn.execute(
            "select count(*) from public.minds where slug in ('x_mind', 'Not A Slug!')"
        ).fetchone() == (0,)

    # syncd_writer may not read auth.users nor write user_profiles: said, with what to do
    as_writer = link(capsys, login_writer(target), "ze@example.com", "ze_mind")
    assert as_writer.code == FATAL_DB
    reason = as_writer.named("database refused syncd")[0]["reason"]
    assert "permission denied" in reason and "admin" in reason, reason
    assert profile(target.admin_dsn, users["ze"]) is None
