"""docs/supabase.md, "Deploying on Supabase", run as written (issue 18, items 1 and 2).

Every ```sh and ```sql block of the guide is run in order, in one bash, the way an operator
pastes them into one terminal: the placeholders filled in, each Supabase URL pointed at a
PgBouncer in front of the Supabase-shaped PostgreSQL 15 or 16 (the pooler's port 6543 at one
in transaction mode, 5432 at one in session mode), the SQL editor's blocks run by psql as
``postgres``. The creators are users signed up beforehand (rows of ``auth.users``, as
Supabase Auth makes them). The section must end with the courses in that database, each
owned by its creator's mind, read by that creator's user and by no other (the impersonation
of tests/test_rls.py: ``SET LOCAL ROLE authenticated`` with the user's JWT claims).

A step that could use the embedded database cannot: a ``DATABASE_URL`` assigned without
``export`` makes the section's rescan exit 2 saying so, and no embedded server starts."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from syncd import migrate
from tests.conftest import SUPABASE_BARE, SupabaseServer
from tests.daemon_harness import REPO
from tests.helpers import EXAMPLES, doc_section
from tests.pgbouncer import PGBOUNCER, Bouncer
from tests.test_rls import acting

GUIDE, SECTION = "docs/supabase.md", "Deploying on Supabase"
# A Supabase URL of the section, whatever its query string (sslmode, sslrootcert ...).
SUPABASE_URL = re.compile(
    r"postgresql://(?P<user>[a-z_]+)\.<project-ref>:<[a-z-]+>"
    r"@aws-0-<region>\.pooler\.supabase\.com:(?P<port>\d+)/postgres(?:\?[^'\"\s]*)?"
)
PLACEHOLDER = re.compile(r"<[a-z][a-z-]*>")
WRITER_PASSWORD = "writer-deploy-secret"  # the test's clusters trust every local login
DEFAULT_CREATOR = "academia-lendaria"
# Who signs up, and the mind each one creates courses as: ana through the example brief's
# `creator_mind: ana_souza` (python-em-30-dias), bia through SYNCD_CREATOR_MIND (the
# examples' escrita-criativa names none). ze signs up and is linked to no mind.
CREATORS = {"ana@example.com": "ana_souza", "bia@example.com": DEFAULT_CREATOR}
COURSE_OF = {"ana@example.com": "python-em-30-dias", "bia@example.com": "escrita-criativa"}


@dataclass(frozen=True)
class Block:
    language: str  # sh | sql
    text: str


def section_blocks() -> list[Block]:
    """The fenced sh and sql blocks of the guide, in order, without their indent."""
    section = doc_section(GUIDE, SECTION)
    found = []
    for match in re.finditer(r"^( *)```(sh|sql)\n(.*?)^\1```", section, re.S | re.M):
        indent = len(match.group(1))
        lines = [line[indent:] for line in match.group(3).splitlines()]
        found.append(Block(match.group(2), "\n".join(lines)))
    return found


@dataclass
class Deployment:
    server: SupabaseServer
    database: str
    transaction: Bouncer  # port 6543 of the section's URLs
    session: Bouncer  # port 5432
    clone: Path  # a clone set up with the README's first command: .venv/bin/syncd, schema/
    courses: Path
    home: Path  # HOME of the shell; the embedded data directory would be under it

    def url(self, match: re.Match[str]) -> str:
        bouncer = self.transaction if match.group("port") == "6543" else self.session
        user = match.group("user")
        password = WRITER_PASSWORD if user == "syncd_writer" else "postgres-deploy-secret"
        return f"postgresql://{user}:{password}@127.0.0.1:{bouncer.port}/{self.database}"

    def fill(self, text: str, creator: tuple[str, str] | None = None) -> str:
        text = SUPABASE_URL.sub(self.url, text)
        values = {
            "<writer-password>": WRITER_PASSWORD,
            "<courses>": str(self.courses),
            "<default-creator-mind>": DEFAULT_CREATOR,
        }
        if creator is not None:
            values.update({"<creator-email>": creator[0], "<creator-mind>": creator[1]})
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        left = set(PLACEHOLDER.findall(text))
        assert not left, f"placeholders the test does not know: {left}\n{text}"
        return text

    def script(self, blocks: list[Block]) -> str:
        """One bash script of the blocks; a block naming one creator runs once per creator;
        an SQL block runs in the SQL editor (psql as postgres, straight to the database)."""
        parts = ["set -euo pipefail"]
        for number, block in enumerate(blocks, 1):
            parts.append(f"echo '### block {number}' >&2")
            if block.language == "sql":
                editor = self.server.dsn(self.database)
                body = self.fill(block.text)
                parts.append(f"psql '{editor}' -X -q -v ON_ERROR_STOP=1 <<'SQL'\n{body}\nSQL")
            elif "<creator-email>" in block.text:
                parts.extend(self.fill(block.text, creator) for creator in CREATORS.items())
            else:
                parts.append(self.fill(block.text))
        return "\n".join(parts) + "\n"

    def run(self, script: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """bash in the clone, with an operator's environment: no DATABASE_URL nor SYNCD_*."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SYNCD_", "PG")) and k not in ("DATABASE_URL", "ADMIN_URL")
        }
        env.update(
            {
                "HOME": str(self.home),
                "XDG_DATA_HOME": str(self.home / ".local" / "share"),
                "PATH": f"{self.server.cluster.bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
                "SYNCD_LOG_FORMAT": "json",
                # where an embedded server would go (not /var/lib/syncd, as root): found
                # there, and stopped, if a command ever starts one
                "SYNCD_DATA_DIR": str(self.data_dir),
            }
        )
        return subprocess.run(
            ["bash", "-c", script],
            cwd=self.clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def data_dir(self) -> Path:
        return self.home / "embedded"

    def embedded_started(self) -> bool:
        return self.data_dir.exists()


def clone_of_this_checkout(folder: Path) -> Path:
    """The README's working folder: ``.venv/bin/syncd`` (this interpreter's syncd) and the
    repository's ``schema/``."""
    (folder / ".venv" / "bin").mkdir(parents=True)
    syncd = folder / ".venv" / "bin" / "syncd"
    syncd.write_text(
        f'#!/bin/sh\nPYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}" exec'
        f' "{sys.executable}" -m syncd "$@"\n',
        encoding="utf-8",
    )
    syncd.chmod(0o755)
    (folder / "schema").symlink_to(migrate.schema_dir())
    return folder


@pytest.fixture(params=["supabase15", "supabase16"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    if not PGBOUNCER.exists():
        message = f"no pgbouncer at {PGBOUNCER} (Debian's pgbouncer package)"
        if os.environ.get("SYNCD_REQUIRE_SUPABASE_SERVERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server: SupabaseServer = request.getfixturevalue(request.param)
    database = server.create_database(template=SUPABASE_BARE)  # a project before syncd
    transaction, session = (
        Bouncer(server.cluster.socket_dir, "transaction"),
        Bouncer(server.cluster.socket_dir, "session"),
    )
    courses = tmp_path / "courses"
    shutil.copytree(EXAMPLES, courses)
    home = tmp_path / "home"
    home.mkdir()
    try:
        transaction.start()
        session.start()
        yield Deployment(
            server,
            database,
            transaction,
            session,
            clone_of_this_checkout(tmp_path / "clone"),
            courses,
            home,
        )
    finally:
        if (home / "embedded").exists():  # a command started it: stop it
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "syncd",
                    "embedded-stop",
                    "--data-dir",
                    str(home / "embedded"),
                ],
                cwd=REPO,
                capture_output=True,
                timeout=120,
                check=False,
            )
        transaction.close()
        session.close()
        server.drop_database(database)


def sign_up(deployment: Deployment, emails: list[str]) -> dict[str, uuid.UUID]:
    """Users as Supabase Auth makes them when they sign up (rows of auth.users)."""
    users = {email: uuid.uuid4() for email in emails}
    admin = deployment.server.admin_dsn(deployment.database)
    with psycopg.connect(admin) as conn:
        for email, user in users.items():
            conn.execute("insert into auth.users (id, email) values (%s, %s)", (user, email))
    return users


def readable_projects(admin_dsn: str, user: uuid.UUID) -> set[str]:
    with psycopg.connect(admin_dsn, autocommit=True) as conn, acting(conn, "authenticated", user):
        return {slug for (slug,) in conn.execute("select slug from public.content_projects")}


def readable_lessons(admin_dsn: str, user: uuid.UUID) -> set[str]:
    with psycopg.connect(admin_dsn, autocommit=True) as conn, acting(conn, "authenticated", user):
        rows = conn.execute(
            "select p.slug from public.contents c join public.content_projects p"
            " on p.id = c.project_id where c.content_type = 'course_lesson'"
        ).fetchall()
    return {slug for (slug,) in rows}


def test_every_syncd_command_of_the_section_refuses_the_embedded_database() -> None:
    """No command of the section can fall back on the embedded database silently."""
    commands = [
        line
        for block in section_blocks()
        for line in block.text.splitlines()
        if "bin/syncd " in line and not line.lstrip().startswith("#")
    ]
    assert len(commands) >= 6, commands
    assert [line for line in commands if "--no-embedded" not in line] == []
    exported = [
        line
        for block in section_blocks()
        for line in block.text.splitlines()
        if re.fullmatch(r"\s*(export\s+)?(DATABASE_URL|ADMIN_URL|SYNCD_\w+)='[^']*'\s*(#.*)?", line)
    ]
    assert exported and all(line.lstrip().startswith("export ") for line in exported), exported


def test_the_guide_run_as_written_leaves_each_creator_owning_their_courses(
    deployment: Deployment,
) -> None:
    users = sign_up(deployment, [*CREATORS, "ze@example.com"])
    blocks = section_blocks()
    assert [b.language for b in blocks].count("sql") == 1, "the SQL editor's block"

    done = deployment.run(deployment.script(blocks))

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert not deployment.embedded_started()
    assert "(0 rows)" in done.stdout  # the linter: no finding
    assert not [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert re.search(r"^(\d+) of \1 scenarios passed$", done.stdout, re.M), done.stdout[-2000:]
    # `syncd minds` says who owns what
    for email, course in COURSE_OF.items():
        mind = CREATORS[email]
        said = [line for line in done.stdout.splitlines() if line.startswith(f"{mind} ")]
        assert len(said) == 1 and email in said[0] and course in said[0], done.stdout

    admin = deployment.server.admin_dsn(deployment.database)
    with psycopg.connect(admin) as conn:
        creators = dict(
            conn.execute(
                "select p.slug, m.slug from public.content_projects p"
                " left join public.minds m on m.id = p.creator_mind_id"
            ).fetchall()
        )
        lessons = conn.execute(
            "select count(*) from public.contents where content_type = 'course_lesson'"
        ).fetchone()
    assert creators == {"python-em-30-dias": "ana_souza", "escrita-criativa": DEFAULT_CREATOR}
    assert lessons is not None and lessons[0] > 0
    for email, course in COURSE_OF.items():
        assert readable_projects(admin, users[email]) == {course}, email
        assert readable_lessons(admin, users[email]) == {course}, email
    assert readable_projects(admin, users["ze@example.com"]) == set()

    # From another shell (only DATABASE_URL: no SYNCD_CREATOR_MIND), verify uses the settings
    # the rescan recorded with the source.
    export = next(
        line.strip()
        for block in blocks
        for line in block.text.splitlines()
        if line.strip().startswith("export DATABASE_URL=")
    )
    again = deployment.run(
        deployment.fill(export)
        + f"\n.venv/bin/syncd verify --no-embedded --root '{deployment.courses}'\n"
    )
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]


def test_a_database_url_not_exported_stops_the_section_instead_of_using_the_embedded_one(
    deployment: Deployment,
) -> None:
    """The report's false pass: step 4 without `export`. The rescan exits 2 naming
    DATABASE_URL and `export`; nothing was written anywhere, no embedded server started."""
    sign_up(deployment, list(CREATORS))
    blocks = section_blocks()
    unexported = [
        Block(b.language, re.sub(r"^export (DATABASE_URL=)", r"\1", b.text, flags=re.M))
        for b in blocks
    ]
    assert unexported != blocks

    done = deployment.run(deployment.script(unexported))

    assert done.returncode == 2, done.stderr[-3000:]
    failed = [
        json.loads(line)
        for line in done.stderr.splitlines()
        if line.startswith("{") and '"configuration error"' in line
    ]
    assert failed, done.stderr[-3000:]
    assert "DATABASE_URL" in failed[-1]["reason"] and "export" in failed[-1]["reason"]
    assert not deployment.embedded_started()
    admin = deployment.server.admin_dsn(deployment.database)
    with psycopg.connect(admin) as conn:
        assert conn.execute("select count(*) from public.contents").fetchone() == (0,)
