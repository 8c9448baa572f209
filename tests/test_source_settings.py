"""One source, one set of settings (issue 18, item 3). The settings that shape rows
(SYNCD_CREATOR_MIND, SYNCD_MAX_FILE_BYTES, SYNCD_FOLLOW_SYMLINKS) are recorded with the source
by its writer; `verify`, `--rescan` and `report` run from another shell without them use the
recorded ones, and run with other values they say so, naming the setting, instead of listing
every row as stale. Every `stale` line names the fields that differ."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd.config import Settings
from tests.conftest import Target
from tests.daemon_harness import DaemonProcess
from tests.helpers import EXAMPLES, Run, run_cli, write
from tests.test_rls import login_writer

CONFIG = 2


def rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params or None).fetchall()


def creators(dsn: str) -> dict[str, str | None]:
    return dict(
        rows(
            dsn,
            "select p.slug, m.slug from public.content_projects p"
            " left join public.minds m on m.id = p.creator_mind_id",
        )
    )


def stale(run: Run) -> list[str]:
    return [line for line in run.stdout.splitlines() if line.startswith("stale")]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The examples, one lesson of which is a link to a file outside the tree."""
    courses = tmp_path / "courses"
    shutil.copytree(EXAMPLES, courses)
    outside = write(tmp_path / "elsewhere" / "2.2-linked.md", "# Linked lesson\n\nText.\n")
    (courses / "escrita-criativa" / "lessons" / "2.2-linked.md").symlink_to(outside)
    return courses


WRITTEN_WITH = {"SYNCD_CREATOR_MIND": "team_lead", "SYNCD_FOLLOW_SYMLINKS": "true"}


def test_verify_rescan_and_report_from_another_shell_use_the_recorded_settings(
    capsys: pytest.CaptureFixture[str], root: Path, db_target: Target
) -> None:
    """The report: verify without the writer's SYNCD_CREATOR_MIND listed every row stale."""
    writer = login_writer(db_target)
    first = run_cli(capsys, ["--rescan", "--root", str(root)], writer, WRITTEN_WITH)
    assert first.code == 0, first.stderr
    assert creators(db_target.admin_dsn) == {
        "escrita-criativa": "team_lead",
        "python-em-30-dias": "ana_souza",  # its brief's creator_mind:
    }

    verify = run_cli(capsys, ["verify", "--root", str(root)], writer)  # no setting at all
    assert verify.code == 0, verify.stdout + verify.stderr
    assert stale(verify) == []

    rescan = run_cli(capsys, ["--rescan", "--root", str(root)], writer)
    assert rescan.code == 0, rescan.stderr
    done = rescan.named("reconcile finished")[0]
    assert (done["inserted"], done["updated"], done["deleted"]) == (0, 0, 0)
    assert creators(db_target.admin_dsn)["escrita-criativa"] == "team_lead"

    report = run_cli(capsys, ["report"], db_target.owner_dsn, {"SYNCD_ROOT": str(root)})
    assert report.code == 0, report.stderr
    sources = report.stdout.split("== Sources", 1)[1].split("==", 1)[0]
    assert "team_lead" in sources and "follow_symlinks" in sources, sources


def test_verify_given_another_creator_mind_names_the_setting_not_every_row(
    capsys: pytest.CaptureFixture[str], root: Path, db_dsn: str
) -> None:
    assert run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn, WRITTEN_WITH).code == 0
    env = {**WRITTEN_WITH, "SYNCD_CREATOR_MIND": "someone_else"}

    verify = run_cli(capsys, ["verify", "--root", str(root)], db_dsn, env)

    assert verify.code == CONFIG, verify.stdout + verify.stderr
    assert stale(verify) == []
    reason = verify.named("configuration error")[0]["reason"]
    for word in ("SYNCD_CREATOR_MIND", "someone_else", "team_lead", "recorded"):
        assert word in reason, reason
    assert "FOLLOW_SYMLINKS" not in reason  # the same as recorded: not a difference


def test_a_rescan_given_another_setting_writes_nothing_unless_told_to_change_it(
    capsys: pytest.CaptureFixture[str], root: Path, db_dsn: str
) -> None:
    assert run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn, WRITTEN_WITH).code == 0
    other = {"SYNCD_CREATOR_MIND": "someone_else"}

    refused = run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn, other)
    assert refused.code == CONFIG, refused.stderr
    reason = refused.named("configuration error")[0]["reason"]
    assert "SYNCD_CREATOR_MIND" in reason and "--change-settings" in reason, reason
    assert creators(db_dsn)["escrita-criativa"] == "team_lead"

    changed = run_cli(capsys, ["--rescan", "--change-settings", "--root", str(root)], db_dsn, other)
    assert changed.code == 0, changed.stderr
    said = changed.named("source settings changed")
    assert said and said[0]["changed"] == ["creator_mind: 'team_lead' -> 'someone_else'"], said
    assert creators(db_dsn)["escrita-criativa"] == "someone_else"
    # recorded: the next verify from a bare shell agrees (links still followed)
    assert run_cli(capsys, ["verify", "--root", str(root)], db_dsn).code == 0


def test_max_file_bytes_is_the_recorded_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """A file over the writer's limit is `too-large` for a verify run without the limit, not
    `missing` (a row the writer should have made)."""
    root = tmp_path / "courses"
    shutil.copytree(EXAMPLES, root)
    big = write(root / "escrita-criativa" / "lessons" / "3.1-big.md", "# Big\n\n" + "x" * 5000)
    limit = {"SYNCD_MAX_FILE_BYTES": "4096"}
    assert run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn, limit).code == 0

    verify = run_cli(capsys, ["verify", "--root", str(root), "--json"], db_dsn)

    assert verify.code == 1
    drifts = json.loads(verify.stdout)["drifts"]
    assert [(d["kind"], d["path"]) for d in drifts] == [
        ("too-large", big.relative_to(root).as_posix())
    ], drifts


def test_the_daemon_takes_its_own_settings_as_the_sources_new_ones_and_says_so(
    capsys: pytest.CaptureFixture[str],
    root: Path,
    db_dsn: str,
    daemons: list[DaemonProcess],
) -> None:
    assert run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn, WRITTEN_WITH).code == 0
    daemon = DaemonProcess(
        root, db_dsn, "--creator-mind", "someone_else", "--follow-symlinks", "--quiet-ms", "100"
    )
    daemons.append(daemon)
    said = daemon.wait_event("source settings changed", timeout=60)
    assert said["changed"] == ["creator_mind: 'team_lead' -> 'someone_else'"], said
    daemon.wait_event("daemon ready", timeout=60)
    assert daemon.terminate() == 0
    assert creators(db_dsn)["escrita-criativa"] == "someone_else"
    assert run_cli(capsys, ["verify", "--root", str(root)], db_dsn).code == 0


def test_every_stale_line_names_its_fields(
    capsys: pytest.CaptureFixture[str], root: Path, db_dsn: str
) -> None:
    """Rows changed in SQL (a project's creator, a lesson's title, a mind link): each `stale`
    line names what differs, in the text and in --json."""
    assert run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn, WRITTEN_WITH).code == 0
    with psycopg.connect(db_dsn) as conn:
        conn.execute("insert into public.minds (slug, display_name) values ('intruder', 'I')")
        conn.execute(
            "update public.content_projects set creator_mind_id ="
            " (select id from public.minds where slug = 'intruder')"
            " where slug = 'escrita-criativa'"
        )
        conn.execute(
            "update public.contents set title = 'Changed' where file_path like"
            " 'python-em-30-dias/lessons/1.1-%'"
        )
        conn.execute(
            "delete from public.content_minds where content_id in (select id from"
            " public.contents where file_path like 'python-em-30-dias/lessons/2.1-%')"
        )

    verify = run_cli(capsys, ["verify", "--root", str(root)], db_dsn)
    as_json = run_cli(capsys, ["verify", "--root", str(root), "--json"], db_dsn)

    assert verify.code == 1
    assert sorted(" ".join(line.split()) for line in stale(verify)) == [
        "stale escrita-criativa (project: creator_mind)",
        "stale python-em-30-dias/lessons/1.1-por-que-python.md (title)",
        "stale python-em-30-dias/lessons/2.1-lendo-planilhas.md (minds)",
    ]
    drifts = [d for d in json.loads(as_json.stdout)["drifts"] if d["kind"] == "stale"]
    assert len(drifts) == 3 and all(d["fields"] for d in drifts), drifts


# -- the rule itself ---------------------------------------------------------------------------


def test_a_setting_not_given_is_the_recorded_one_and_a_given_one_is_compared() -> None:
    from syncd.source_settings import ROW_SETTINGS, resolve

    recorded = {"creator_mind": "team_lead", "max_file_bytes": 4096, "follow_symlinks": True}
    bare, differences = resolve(Settings(), recorded)
    assert (bare.creator_mind, bare.max_file_bytes, bare.follow_symlinks) == (
        "team_lead",
        4096,
        True,
    )
    assert differences == []

    given = Settings(creator_mind=None, max_file_bytes=4096, explicit=frozenset({"creator_mind"}))
    kept, differences = resolve(given, recorded)  # SYNCD_CREATOR_MIND= (empty): none, on purpose
    assert kept.creator_mind is None and kept.follow_symlinks is True
    assert [str(d) for d in differences] == [
        "SYNCD_CREATOR_MIND (--creator-mind) is none here, but 'team_lead' is recorded for"
        " this source"
    ]
    nothing, differences = resolve(given, None)  # a source never written: nothing recorded
    assert nothing == given and differences == []
    assert {s.name for s in ROW_SETTINGS} == {"creator_mind", "max_file_bytes", "follow_symlinks"}
