-- Rollback of 20251201001200_syncd_project_marks.sql.
alter table syncd.courses drop column if exists links_mark;
alter table syncd.courses drop column if exists audience_xmin;
alter table syncd.courses drop column if exists project_xmin;
