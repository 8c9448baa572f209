-- Rollback of 20251201001300_tenant_namespaces.sql: back to 000800's read policies (a project
-- read by its creator and persona only; contents by their owner, and published rows alone),
-- no slug namespace.
-- NEVER RUN AGAINST PRODUCTION: any signed-in user may again squat the slug of another
-- creator's file, and published lessons lose their project and module for other readers.

drop policy if exists contents_select on public.contents;
create policy contents_select on public.contents
  for select to authenticated
  using (
    project_id = any ((select creatoros_private.owned_project_ids())::uuid[])
    or (status = 'published' and deleted_at is null)
  );

drop policy if exists content_projects_select on public.content_projects;
create policy content_projects_select on public.content_projects
  for select to authenticated
  using (
    creator_mind_id = (select creatoros_private.current_mind_id())
    or persona_mind_id = (select creatoros_private.current_mind_id())
  );

drop index if exists public.idx_contents_structure;
drop function if exists creatoros_private.published_project_ids();

drop trigger if exists contents_slug_namespace on public.contents;
drop function if exists creatoros_private.contents_slug_namespace();
drop function if exists creatoros_private.slug_of_another_project(text, uuid);

drop table if exists syncd.reclaimed_slugs;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201001300';
