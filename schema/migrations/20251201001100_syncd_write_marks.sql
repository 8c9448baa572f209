-- provides: syncd.rows.written_xmin, syncd.courses.row_count
-- syncd bookkeeping: what syncd last wrote, so that edits made by anyone else are found
-- without reading content.
--
-- syncd.rows.written_xmin: the xmin of the contents row right after syncd wrote it. A row
-- whose xmin differs was changed since by someone else (the app, SQL): the next sync of
-- its course rewrites it from its file (same id; app-owned fields kept).
-- syncd.courses.row_count: how many syncd.rows the course had after syncd's last write. A
-- row deleted in SQL takes its syncd.rows entry with it (on delete cascade): a lower count
-- means the next reconcile re-creates it from its file.
-- Both are NULL for what was written before this migration: unknown, never "changed".

alter table syncd.rows add column if not exists written_xmin xid;
alter table syncd.courses add column if not exists row_count integer;
