-- Rollback of 20251201001100_syncd_write_marks.sql.
alter table syncd.courses drop column if exists row_count;
alter table syncd.rows drop column if exists written_xmin;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201001100';
