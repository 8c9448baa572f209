-- Rollback of 20251201001200_syncd_project_marks.sql.
alter table syncd.courses drop column if exists links_mark;
alter table syncd.courses drop column if exists audience_xmin;
alter table syncd.courses drop column if exists project_xmin;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201001200';
