-- Rollback of 20251201000800_supabase_hardening.sql: back to the state after
-- 20251201000700 (policies and helpers as 000300/000500 made them, public.current_mind_id()
-- as 000100 made it, no RLS on the shared tables, no tree check).
-- NEVER RUN AGAINST PRODUCTION: syncd_writer loses its policies (syncd can no longer write
-- unless the role bypasses RLS), the shared tables lose RLS where only syncd's policies were,
-- and authenticated may again hang rows under another tenant's tree.

drop trigger if exists contents_parent_in_same_project_upd on public.contents;
drop trigger if exists contents_parent_in_same_project_ins on public.contents;
drop index if exists public.idx_contents_parent_content_id;
drop index if exists public.idx_contents_generation_execution;
drop index if exists syncd.idx_syncd_courses_project;

do $$
declare
  t text;
begin
  foreach t in array array[
    'content_projects', 'contents', 'audience_profiles', 'content_minds', 'content_tags',
    'minds', 'tags'
  ] loop
    execute format('drop policy if exists syncd_writer_all on public.%I', t);
  end loop;
end
$$;

drop policy if exists minds_select on public.minds;
drop policy if exists minds_update_own on public.minds;
drop policy if exists tags_select on public.tags;
drop policy if exists user_profiles_select_own on public.user_profiles;
drop policy if exists job_executions_select on public.job_executions;
do $$
declare
  t text;
begin
  foreach t in array array['minds', 'tags', 'user_profiles', 'job_executions'] loop
    if not exists (
      select 1 from pg_catalog.pg_policies where schemaname = 'public' and tablename = t
    ) then
      execute format('alter table public.%I disable row level security', t);
    end if;
  end loop;
end
$$;
revoke select on public.user_profiles, public.job_executions from authenticated;
revoke update (display_name, short_bio, primary_language, privacy_level) on public.minds
  from authenticated;
revoke update on public.minds from authenticated;

drop policy if exists content_projects_select on public.content_projects;
drop policy if exists content_projects_insert on public.content_projects;
drop policy if exists content_projects_update on public.content_projects;
drop policy if exists content_projects_delete on public.content_projects;
drop policy if exists contents_select on public.contents;
drop policy if exists contents_insert on public.contents;
drop policy if exists contents_update on public.contents;
drop policy if exists contents_delete on public.contents;
drop policy if exists audience_profiles_select on public.audience_profiles;
drop policy if exists audience_profiles_insert on public.audience_profiles;
drop policy if exists audience_profiles_update on public.audience_profiles;
drop policy if exists audience_profiles_delete on public.audience_profiles;
drop policy if exists content_minds_via_content on public.content_minds;
drop policy if exists content_tags_via_content on public.content_tags;

drop schema if exists creatoros_private cascade;

-- public.current_mind_id() as 000100 made it (dropped first so its privileges are the
-- defaults again).
drop function if exists public.current_mind_id();
create or replace function public.current_mind_id() returns uuid
  language sql
  stable
  security definer
  set search_path = ''
  as $$
    select mind_id from public.user_profiles where id = auth.uid()
  $$;

-- The helpers and policies as 000500 made them.
-- Ids of the projects the current mind created ('{}' without a signed-in mind).
create or replace function public.owned_project_ids() returns uuid[]
  language sql
  stable
  security definer
  set search_path = ''
  as $$
    select coalesce(array_agg(p.id), '{}'::uuid[])
    from public.content_projects p
    where p.creator_mind_id = (select public.current_mind_id())
  $$;

-- Ids of the audience profiles that projects created by the current mind target.
create or replace function public.targeted_audience_ids() returns uuid[]
  language sql
  stable
  security definer
  set search_path = ''
  as $$
    select coalesce(array_agg(distinct p.target_audience_id), '{}'::uuid[])
    from public.content_projects p
    where p.creator_mind_id = (select public.current_mind_id())
      and p.target_audience_id is not null
  $$;

-- Whether the content row belongs to a project the current mind created (link tables).
create or replace function public.owns_content(content_id uuid) returns boolean
  language sql
  stable
  security definer
  set search_path = ''
  as $$
    select exists (
      select 1
      from public.contents c
      join public.content_projects p on p.id = c.project_id
      where c.id = owns_content.content_id
        and p.creator_mind_id = (select public.current_mind_id())
    )
  $$;

revoke all on function
  public.owned_project_ids(), public.targeted_audience_ids(), public.owns_content(uuid)
  from public, anon;
grant execute on function
  public.owned_project_ids(), public.targeted_audience_ids(), public.owns_content(uuid)
  to authenticated, service_role;

drop policy if exists content_projects_rw_mine on public.content_projects;
create policy content_projects_rw_mine on public.content_projects
  for all to authenticated
  using (creator_mind_id = (select public.current_mind_id()))
  with check (
    creator_mind_id = (select public.current_mind_id())
    and (
      target_audience_id is null
      or exists (select 1 from public.audience_profiles a where a.id = target_audience_id)
    )
  );

-- contents: read/write in own projects. contents_read_published stays as 000300 made it.
drop policy if exists contents_rw_by_project on public.contents;
create policy contents_rw_by_project on public.contents
  for all to authenticated
  using (project_id = any ((select public.owned_project_ids())::uuid[]))
  with check (project_id = any ((select public.owned_project_ids())::uuid[]));

-- audience_profiles: the owner does everything; creators of projects that target a profile
-- read it.
drop policy if exists audience_profiles_read_all on public.audience_profiles;
drop policy if exists audience_profiles_write_all on public.audience_profiles;

drop policy if exists audience_profiles_rw_own on public.audience_profiles;
create policy audience_profiles_rw_own on public.audience_profiles
  for all to authenticated
  using (owner_mind_id = (select public.current_mind_id()))
  with check (owner_mind_id = (select public.current_mind_id()));

drop policy if exists audience_profiles_read_as_target on public.audience_profiles;
create policy audience_profiles_read_as_target on public.audience_profiles
  for select to authenticated
  using (id = any ((select public.targeted_audience_ids())::uuid[]));

-- Link tables: through their parent content row, for reads and writes.
drop policy if exists content_minds_via_content on public.content_minds;
create policy content_minds_via_content on public.content_minds
  for all to authenticated
  using (public.owns_content(content_id))
  with check (public.owns_content(content_id));

drop policy if exists content_tags_via_content on public.content_tags;
create policy content_tags_via_content on public.content_tags
  for all to authenticated
  using (public.owns_content(content_id))
  with check (public.owns_content(content_id));

-- The two upstream policies 000500 kept from 000300.
create policy content_projects_read_as_persona on public.content_projects
  for select to authenticated
  using (persona_mind_id = (select public.current_mind_id()));

create policy contents_read_published on public.contents
  for select to authenticated
  using (status = 'published' and deleted_at is null);

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201000800';
