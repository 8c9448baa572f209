-- provides: public.content_versions, public.content_versions.content, public.content_history, rls:public.content_versions
-- Content history: every version of a contents row that syncd wrote. syncd appends a
-- version, in the same transaction as the write, whenever it writes a row whose content or
-- title changed (kind 'updated'), and whenever it creates, soft-deletes, revives or moves
-- one ('created', 'deleted', 'revived', 'moved'). A row edited in the app and put back from
-- its file gives two: the app's edit as syncd found it ('app-edit', no source; only when
-- the content or title differed from the last version), then what syncd wrote back
-- ('repaired', with the fields that differed). Rows that exist when this migration runs get
-- version 1 here ('existing'). Retention (SYNCD_HISTORY_KEEP) is applied by syncd.
--
-- Protected like the content: a creator reads the history of their own projects, nobody
-- else does (a published lesson's history included); API roles never write or delete it
-- (service_role included: its BYPASSRLS does not give it privileges it was not granted).
-- syncd_writer appends and prunes through its own policy. No foreign key to contents: a row
-- deleted for good in the app keeps its history until its project goes.

create table if not exists public.content_versions (
  content_id uuid not null,
  version integer not null check (version > 0),
  project_id uuid not null references public.content_projects (id) on delete cascade,
  kind text not null check (kind in (
    'existing', 'created', 'updated', 'deleted', 'revived', 'moved', 'app-edit', 'repaired'
  )),
  title text,
  content text,
  content_hash bytea not null,  -- sha256 of the content's UTF-8 (of '' for none)
  size integer not null,        -- octet_length of the content
  file_path text,
  source text,                  -- the syncd source that wrote it; NULL for 'app-edit'
  fields text[],                -- 'repaired': the syncd-owned fields the app had changed
  recorded_at timestamptz not null default now(),
  primary key (content_id, version)
);
comment on table public.content_versions is
  'Every version of a contents row syncd wrote (syncd migration 20251201001500)';

create index if not exists idx_content_versions_project on public.content_versions (project_id);

alter table public.content_versions enable row level security;

-- (syncd_writer is revoked and granted again too: a second run leaves the same ACL, in order)
revoke all on public.content_versions from public, anon, authenticated, service_role, syncd_writer;
grant select on public.content_versions to authenticated, service_role;
grant select, insert, delete on public.content_versions to syncd_writer;

drop policy if exists content_versions_select on public.content_versions;
create policy content_versions_select on public.content_versions
  for select to authenticated
  using (project_id = any ((select creatoros_private.owned_project_ids())::uuid[]));

drop policy if exists syncd_writer_all on public.content_versions;
create policy syncd_writer_all on public.content_versions
  for all to syncd_writer using (true) with check (true);

-- The app's list: one row per version, without the content (read it from the table),
-- as the caller (security_invoker: the table's row-level security applies).
create or replace view public.content_history with (security_invoker = true) as
select v.content_id, v.project_id, v.version, v.recorded_at, v.source, v.kind,
       v.size, encode(v.content_hash, 'hex') as content_hash, v.title, v.file_path, v.fields
from public.content_versions v;
comment on view public.content_history is
  'Versions of each contents row, newest last (syncd migration 20251201001500)';

revoke all on public.content_history
  from public, anon, authenticated, service_role, syncd_writer;
grant select on public.content_history to authenticated, service_role, syncd_writer;

-- Version 1 of every row syncd wrote that is there now.
insert into public.content_versions
  (content_id, version, project_id, kind, title, content, content_hash, size, file_path,
   source, recorded_at)
select c.id, 1, c.project_id, 'existing', c.title, c.content,
       sha256(convert_to(coalesce(c.content, ''), 'UTF8')), octet_length(coalesce(c.content, '')),
       c.file_path, sc.source, now()
from public.contents c
join syncd.rows r on r.content_id = c.id
left join syncd.courses sc on sc.project_id = c.project_id
where c.deleted_at is null
on conflict do nothing;
