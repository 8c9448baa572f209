-- provides: syncd.sources, syncd.conflicts, syncd.courses.source, syncd.courses.archived_at, syncd.rows.fm_status
-- syncd bookkeeping: sources, and who owns which field.
--
-- A source is one syncd: a name (default: host name and absolute root), the root it reads
-- and the host it runs on. Every course records the source that owns it; a reconcile
-- archives and soft-deletes only what its own source synced, and a course folder of the
-- same name under another source is a conflict (the first owner keeps the course).
-- Courses synced before sources existed have no source: the first source that syncs one
-- adopts it.
--
-- archived_at marks a project archived by syncd (its folder vanished), so that only such
-- an archive is undone when the folder returns; a project archived in the app stays so.
-- syncd.rows.fm_status is the status last taken from a file's frontmatter: a frontmatter
-- status is applied when it changes, not on every edit of the file.

create table if not exists syncd.sources (
  name text primary key,
  root text not null,
  host text not null,
  first_seen timestamptz not null default now(),
  last_seen timestamptz not null default now(),
  retired_at timestamptz
);

alter table syncd.courses
  add column if not exists source text references syncd.sources (name) on update cascade;
create index if not exists idx_syncd_courses_source on syncd.courses (source);

alter table syncd.courses add column if not exists archived_at timestamptz;
update syncd.courses set archived_at = synced_at
where archived_at is null and status_before_archive is not null;

alter table syncd.rows add column if not exists fm_status text;

-- Courses a source found owned by another one, as its last full reconcile saw them.
create table if not exists syncd.conflicts (
  course text not null,
  source text not null references syncd.sources (name) on update cascade on delete cascade,
  owner text not null,
  seen_at timestamptz not null default now(),
  primary key (course, source)
);
create index if not exists idx_syncd_conflicts_source on syncd.conflicts (source);

grant select, insert, update on syncd.sources to syncd_writer;
grant select, insert, update, delete on syncd.conflicts to syncd_writer;
