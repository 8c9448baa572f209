-- provides: syncd.refused, syncd.skipped_folders
-- syncd bookkeeping, for `syncd verify` and `syncd report`.
--
-- syncd.refused: files whose row the database refused (a data error: SQLSTATE classes
-- 22, 23, 54, e.g. a lesson too large for the full-text index). The rest of their course is
-- written; each refused file keeps its old row, is retried on every sync of its course,
-- and is listed by `syncd verify` with the database's reason. Cleared when it is written.

create table if not exists syncd.refused (
  file_path text primary key,           -- relative to the root, as contents.file_path
  project_id uuid not null references public.content_projects (id) on delete cascade,
  sqlstate text not null,
  reason text not null,
  refused_at timestamptz not null default now()
);

create index if not exists idx_syncd_refused_project on syncd.refused (project_id);

grant select, insert, update, delete on syncd.refused to syncd_writer;

-- syncd.skipped_folders: folders under the root that are not courses but hold files, with
-- their file count, as the last full reconcile saw them (`syncd report` lists them).
create table if not exists syncd.skipped_folders (
  folder text primary key,
  files integer not null,
  seen_at timestamptz not null default now()
);

grant select, insert, update, delete on syncd.skipped_folders to syncd_writer;
