-- provides: syncd.courses.stat_fingerprint
-- syncd bookkeeping: a per-course hash of its files' (path, size, mtime, ctime, inode), so
-- that a rescan of an unchanged tree stats the files instead of reading them.
alter table syncd.courses add column if not exists stat_fingerprint bytea;
