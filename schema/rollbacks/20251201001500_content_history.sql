-- Rollback of 20251201001500_content_history.sql: the history goes with its table.
drop view if exists public.content_history;
drop table if exists public.content_versions;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201001500';
