-- Rollback of 20251201001000_syncd_sources.sql.
drop table if exists syncd.conflicts;
alter table syncd.rows drop column if exists fm_status;
alter table syncd.courses drop column if exists archived_at;
drop index if exists syncd.idx_syncd_courses_source;
alter table syncd.courses drop column if exists source;
drop table if exists syncd.sources;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201001000';
