-- Rollback of 20251201000900_syncd_refused.sql.
drop table if exists syncd.skipped_folders;
drop table if exists syncd.refused;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201000900';
