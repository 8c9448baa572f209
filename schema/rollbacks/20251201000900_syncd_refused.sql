-- Rollback of 20251201000900_syncd_refused.sql.
drop table if exists syncd.skipped_folders;
drop table if exists syncd.refused;
