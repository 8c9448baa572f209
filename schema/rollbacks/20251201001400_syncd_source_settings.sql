-- Rollback of 20251201001400_syncd_source_settings.sql.
alter table syncd.sources drop column if exists settings;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201001400';
