-- Rollback of 20251201000400_syncd_bookkeeping.sql: drops syncd's bookkeeping tables (syncd
-- then treats every course as new). The schema syncd and its migration ledger stay.

drop table if exists syncd.rows;
drop table if exists syncd.courses;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201000400';
