-- Rollback of 20251201001100_syncd_write_marks.sql.
alter table syncd.courses drop column if exists row_count;
alter table syncd.rows drop column if exists written_xmin;
