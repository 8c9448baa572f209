"""A known database password never reaches a log line, an error message, a repr, --help
or a report."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from syncd.cli import _build_parser, _settings
from syncd.config import redact_dsn
from tests.helpers import run_cli

PASSWORD = "S3cr3t-Pa55w0rd"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "courses"


def url_with_password(dsn: str) -> str:
    info = conninfo_to_dict(dsn)
    return f"postgresql://{info.get('user', 'postgres')}:{PASSWORD}@/{info['dbname']}?host={info['host']}"


def test_the_password_appears_in_no_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    shutil.copytree(EXAMPLES, root)
    with psycopg.connect(db_dsn) as conn:  # the database refuses one course, quoting the password
        conn.execute(f"""
            create function refuse() returns trigger language plpgsql as $$
            begin
              if new.file_path like 'escrita-criativa/%' then
                raise exception 'refused row (password=%)', '{PASSWORD}';
              end if;
              return new;
            end $$;
            create trigger refuse before insert on contents for each row execute function refuse();""")
    dsn = url_with_password(db_dsn)
    outputs = []

    rescan = run_cli(capsys, ["--rescan", "--root", str(root)], dsn)
    outputs.append(rescan.stdout + rescan.stderr)
    assert rescan.code == 0
    refused = rescan.named("course rejected")
    assert [e["course"] for e in refused] == ["escrita-criativa"] and "***" in refused[0]["reason"]

    failed = run_cli(
        capsys,
        ["--rescan", "--root", str(root)],
        f"postgresql://syncd:{PASSWORD}@127.0.0.1:1/db?connect_timeout=1",
    )
    outputs.append(failed.stdout + failed.stderr)
    assert failed.code == 3

    for argv in (["verify", "--root", str(root)], ["report"], ["migrate", "--status"]):
        run = run_cli(capsys, argv, dsn)
        outputs.append(run.stdout + run.stderr)
    with pytest.raises(SystemExit):
        run_cli(capsys, ["--help"], dsn)
    outputs.append(capsys.readouterr().out)

    env = {"DATABASE_URL": dsn}
    settings = _settings(_build_parser("run", env).parse_args([]), env)
    outputs.append(repr(settings) + str(settings.database_url) + redact_dsn(dsn))

    assert all(output for output in outputs)
    for output in outputs:
        assert PASSWORD not in output


def test_key_value_dsns_are_redacted_too() -> None:
    assert (
        redact_dsn(f"host=db user=x password={PASSWORD} dbname=y")
        == "host=db user=x password=*** dbname=y"
    )
    assert (
        redact_dsn(f"host=db password='{PASSWORD} x' dbname=y") == "host=db password=*** dbname=y"
    )
    assert PASSWORD not in redact_dsn(f"postgresql://u:{PASSWORD}@h:5432/d")
