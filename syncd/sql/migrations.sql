-- Statements of the migration runner (syncd/migrate.py): its ledger and its lock.

-- name: create_ledger
create schema if not exists syncd;
create table if not exists syncd.schema_migrations (
  version text primary key,
  name text not null,
  checksum text not null,
  applied_at timestamptz not null default now()
);

-- name: lock
-- serializes migration runners on one database, until the transaction ends
select pg_advisory_xact_lock(%(key)s);

-- name: ledger_exists
select to_regclass('syncd.schema_migrations') is not null;

-- name: is_applied
select 1 from syncd.schema_migrations where version = %(version)s;

-- name: record_applied
insert into syncd.schema_migrations (version, name, checksum)
values (%(version)s, %(name)s, %(checksum)s);

-- name: latest_applied
-- NULL when the ledger is empty
select max(version) from syncd.schema_migrations;

-- name: forget_applied
delete from syncd.schema_migrations where version = %(version)s;
