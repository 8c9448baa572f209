-- provides: rls:public.content_projects, rls:public.contents, rls:public.audience_profiles, rls:public.content_minds, rls:public.content_tags
-- Row-level security as shipped upstream (20251028120001_creator_os_rls_policies), with
-- upstream's policy names so that re-applying replaces upstream's policies instead of adding
-- a second set. Differences: auth-derived values are wrapped as (select ...) so the planner
-- evaluates them once per query (Supabase's advice), names are schema-qualified, and the
-- link-table policies also have WITH CHECK. All policies are for role authenticated; the
-- table owner and service_role (BYPASSRLS) are not subject to them.

alter table public.content_projects enable row level security;
alter table public.contents enable row level security;
alter table public.audience_profiles enable row level security;
alter table public.content_minds enable row level security;
alter table public.content_tags enable row level security;

-- content_projects: read/write own (creator), read-only as persona.
drop policy if exists content_projects_rw_mine on public.content_projects;
create policy content_projects_rw_mine on public.content_projects
  for all to authenticated
  using (creator_mind_id = (select public.current_mind_id()))
  with check (creator_mind_id = (select public.current_mind_id()));

drop policy if exists content_projects_read_as_persona on public.content_projects;
create policy content_projects_read_as_persona on public.content_projects
  for select to authenticated
  using (persona_mind_id = (select public.current_mind_id()));

-- contents: read/write in own projects; anyone authenticated reads published content.
drop policy if exists contents_rw_by_project on public.contents;
create policy contents_rw_by_project on public.contents
  for all to authenticated
  using (project_id in (
    select p.id from public.content_projects p
    where p.creator_mind_id = (select public.current_mind_id())
  ))
  with check (project_id in (
    select p.id from public.content_projects p
    where p.creator_mind_id = (select public.current_mind_id())
  ));

drop policy if exists contents_read_published on public.contents;
create policy contents_read_published on public.contents
  for select to authenticated
  using (status = 'published' and deleted_at is null);

-- audience_profiles: shared; upstream TODO: add an owner and restrict writes to it.
drop policy if exists audience_profiles_read_all on public.audience_profiles;
create policy audience_profiles_read_all on public.audience_profiles
  for select to authenticated
  using (true);

drop policy if exists audience_profiles_write_all on public.audience_profiles;
create policy audience_profiles_write_all on public.audience_profiles
  for insert to authenticated
  with check (true);

-- Link tables: all access where the content's project is owned by the current mind.
drop policy if exists content_minds_via_content on public.content_minds;
create policy content_minds_via_content on public.content_minds
  for all to authenticated
  using (content_id in (
    select c.id from public.contents c
    join public.content_projects p on p.id = c.project_id
    where p.creator_mind_id = (select public.current_mind_id())
  ))
  with check (content_id in (
    select c.id from public.contents c
    join public.content_projects p on p.id = c.project_id
    where p.creator_mind_id = (select public.current_mind_id())
  ));

drop policy if exists content_tags_via_content on public.content_tags;
create policy content_tags_via_content on public.content_tags
  for all to authenticated
  using (content_id in (
    select c.id from public.contents c
    join public.content_projects p on p.id = c.project_id
    where p.creator_mind_id = (select public.current_mind_id())
  ))
  with check (content_id in (
    select c.id from public.contents c
    join public.content_projects p on p.id = c.project_id
    where p.creator_mind_id = (select public.current_mind_id())
  ));

-- Privileges. Supabase grants these by default privileges already (then this is a no-op);
-- plain PostgreSQL needs them spelled out.
grant select, insert, update, delete
  on public.audience_profiles, public.content_projects, public.contents,
     public.content_minds, public.content_tags
  to authenticated, service_role;
grant select on public.v_contents_with_creators to authenticated, service_role;
-- The view is security_invoker, so its readers need to read the minds it joins; tags are
-- read alongside content_tags. service_role may create tags (bigserial id).
grant select on public.minds, public.tags to authenticated, service_role;
grant insert, update on public.tags to service_role;
grant usage, select on sequence public.tags_id_seq to service_role;
