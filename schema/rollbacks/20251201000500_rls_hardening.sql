-- Rollback of 20251201000500_rls_hardening.sql: back to exactly the state after
-- 20251201000400 (upstream's policies as 000300 wrote them).
-- NEVER RUN AGAINST PRODUCTION: it drops audience_profiles.owner_mind_id (every profile's
-- owner is lost) and reopens audience profiles to every authenticated user.

-- Policies as 000300 made them (same text, so the catalog is as before).
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

drop policy if exists audience_profiles_read_as_target on public.audience_profiles;
drop policy if exists audience_profiles_rw_own on public.audience_profiles;

drop policy if exists audience_profiles_read_all on public.audience_profiles;
create policy audience_profiles_read_all on public.audience_profiles
  for select to authenticated
  using (true);

drop policy if exists audience_profiles_write_all on public.audience_profiles;
create policy audience_profiles_write_all on public.audience_profiles
  for insert to authenticated
  with check (true);

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

drop policy if exists content_projects_rw_mine on public.content_projects;
create policy content_projects_rw_mine on public.content_projects
  for all to authenticated
  using (creator_mind_id = (select public.current_mind_id()))
  with check (creator_mind_id = (select public.current_mind_id()));

drop function if exists public.owns_content(uuid);
drop function if exists public.targeted_audience_ids();
drop function if exists public.owned_project_ids();

drop index if exists public.idx_contents_project_rls;
drop index if exists public.idx_contents_published;
drop index if exists public.idx_content_projects_target_audience;
drop index if exists public.idx_audience_profiles_owner_mind;

alter table public.audience_profiles drop column if exists owner_mind_id;

-- anon's privileges: plain PostgreSQL never granted it any. On Supabase it had everything,
-- through the default privileges every table in public gets there; give that back.
do $$
begin
  if exists (
    select 1 from information_schema.columns
    where table_schema = 'auth' and table_name = 'users' and column_name = 'instance_id'
  ) then
    grant all
      on public.audience_profiles, public.content_projects, public.contents,
         public.content_minds, public.content_tags, public.v_contents_with_creators
      to anon;
  end if;
end
$$;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201000500';
