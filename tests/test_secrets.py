"""A known database password never reaches a log line, an error message, a repr, --help
or a report."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from syncd import config
from syncd.config import redact_dsn
from tests.helpers import EXAMPLES, run_cli

PASSWORD = "S3cr3t-Pa55w0rd"


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
    assert rescan.code == 1  # a course failed: not everything reached the database
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
    settings = config.build("run", {}, env)
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


# -- malformed DATABASE_URLs (issue 16, item 6) ---------------------------------------------

SECRET = "Sekr3tPw"  # every shape below holds it; the output must not, in any form
MALFORMED = {
    "no colon after the scheme": f"postgresql//u:{SECRET}@127.0.0.1:1/x",
    "no scheme": f"//u:{SECRET}@127.0.0.1:1/x",
    "scheme without slashes": f"postgresql:u:{SECRET}@127.0.0.1:1/x",
    "another scheme": f"mysql://u:{SECRET}@127.0.0.1:1/x",
    "unclosed bracket": f"postgresql://u:{SECRET}@[::1/x",
    "bad sslmode": f"postgresql://u:{SECRET}@127.0.0.1:1/x?sslmode=bogus",
    "port out of range": f"postgresql://u:{SECRET}@127.0.0.1:99999/x",
    "port zero": f"postgres://u:{SECRET}@127.0.0.1:0/x",
    "port not a number": f"postgresql://u:{SECRET}@127.0.0.1:5x/x",
    "unknown parameter": f"postgresql://u:{SECRET}@127.0.0.1:1/x?sslmod=require",
    "bad percent escape in the password": f"postgresql://u:{SECRET}%zz@127.0.0.1:1/x",
    "percent-encoded password": f"postgresql://u:{SECRET}%2F%40x@127.0.0.1:99999/x",
    "password with a slash": f"postgresql://u:{SECRET}/x@127.0.0.1:99999/x",
    "an @ in the password": f"postgresql://u:{SECRET}@x@127.0.0.1:1/x",
    "password in the query": f"postgresql://u@127.0.0.1:1/x?password={SECRET}&sslmode=nope",
    "bad target_session_attrs": f"postgresql://u:{SECRET}@127.0.0.1:1/x?target_session_attrs=x",
    "hostaddr not an address": f"postgresql://u:{SECRET}@h:1/x?hostaddr=nowhere",
    "key=value, space in an unquoted password": f"host=127.0.0.1 port=1 password=half {SECRET}",
    "key=value, unterminated quote": f"host=127.0.0.1 port=1 password='{SECRET} dbname=x",
    "key=value, unknown keyword": f"host=127.0.0.1 port=1 password={SECRET} sslmod=require",
    "key=value, quoted password, bad port": f"host=127.0.0.1 port=70000 password='{SECRET} x'",
    "key=value, bad sslmode": f"host=127.0.0.1 password={SECRET} sslmode=REQUIRE",
    # options only libpq itself checks, when it connects (the review of issue 16)
    "bad require_auth": f"postgresql://u:{SECRET}@127.0.0.1:1/x?require_auth=bogus",
    "bad min_protocol_version": f"postgresql://u:{SECRET}@127.0.0.1:1/x?min_protocol_version=x",
    "weak sslmode with the system CA": (
        f"postgresql://u:{SECRET}@127.0.0.1:1/x?sslmode=require&sslrootcert=system"
    ),
}


@pytest.mark.parametrize("dsn", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_database_url_is_redacted_whatever_its_shape(dsn: str) -> None:
    from syncd.config import dsn_secrets, redact

    shown = redact_dsn(dsn)
    assert SECRET not in shown and "***" in shown
    assert SECRET not in redact(f"a message quoting {dsn} whole", dsn_secrets(dsn))


@pytest.mark.parametrize("dsn", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize(
    "argv",
    [["verify", "--root", str(EXAMPLES)], ["--rescan", "--root", str(EXAMPLES)], ["migrate"]],
    ids=["verify", "rescan", "migrate"],
)
def test_a_malformed_database_url_exits_2_and_shows_no_password(
    capsys: pytest.CaptureFixture[str], dsn: str, argv: list[str]
) -> None:
    run = run_cli(capsys, [*argv, "--connect-timeout", "1"], dsn)
    assert SECRET not in run.stdout + run.stderr
    assert run.code == 2, run.stderr
    reason = run.named("configuration error")[0]["reason"]
    assert reason.startswith("DATABASE_URL") and "***" in reason, reason


def test_the_message_says_what_is_wrong(capsys: pytest.CaptureFixture[str]) -> None:
    expected = {
        "no colon after the scheme": "postgresql://",
        "unclosed bracket": '"]"',
        "bad sslmode": "verify-full",
        "port out of range": "99999",
        "unknown parameter": "sslmod",
        "key=value, unknown keyword": "sslmod",
    }
    for shape, says in expected.items():
        run = run_cli(capsys, ["verify", "--root", str(EXAMPLES)], MALFORMED[shape])
        reason = run.named("configuration error")[0]["reason"]
        assert says in reason, (shape, reason)


def test_a_malformed_url_in_a_subprocess_exits_2_without_the_password(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env["DATABASE_URL"] = MALFORMED["no colon after the scheme"]
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "--rescan", "--root", str(EXAMPLES)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert SECRET not in done.stdout + done.stderr and "postgresql//u:***@" in done.stderr


VALID = [
    "postgresql://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres",
    "postgres://u:pw@h/db?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem",
    "postgresql:///creatoros",
    "postgresql://%2Fvar%2Frun%2Fpostgresql/db",
    "postgresql://u:p%40ss@[::1]:5432/db",
    "postgresql://h1:123,h2:456/db?target_session_attrs=read-write&application_name=x",
    "postgresql://h1,h2:456/db?load_balance_hosts=random",
    "postgresql://u:pw@h/db?options=-c%20search_path%3Dfoo&connect_timeout=10",
    "postgresql://u:pw@h/db?ssl_min_protocol_version=TLSv1.2&gssencmode=disable",
    "postgresql://u@h:+5432/db?hostaddr=10.0.0.1",
    "host=localhost port=5432 dbname=x user=y password='a b\\' c' sslmode=require",
    "host=/tmp,/var/run port=5432,5433 dbname=x",
    "dbname=x",
]


@pytest.mark.parametrize("dsn", VALID)
def test_a_well_formed_database_url_passes_the_check(dsn: str) -> None:
    from syncd.config import check_database_url

    check_database_url(dsn)
