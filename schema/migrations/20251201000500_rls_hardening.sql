-- provides: public.audience_profiles.owner_mind_id
-- Row-level security, hardened on top of upstream's (20251201000300_rls_upstream.sql).
--
-- What changes, and why:
-- * Ownership lookups go through three small security-definer helpers (below). They read
--   content_projects / contents as their owner, so a policy never re-enters another table's
--   policies (no recursion, no policy stacking), and the array-returning ones are called as
--   (select ...) so they run once per statement (an InitPlan), not once per row.
--   `project_id = any (<array>)` is also indexable, so a creator's listing is an index scan
--   even though it is OR-ed with the "published" policy. (The ::uuid[] cast in
--   `= any ((select f())::uuid[])` is needed: without it `= any (select ...)` is the
--   subquery form and compares with the whole array.)
-- * contents: same rules as upstream (read/write in projects the current mind created; any
--   authenticated user reads published, non-deleted rows).
-- * content_minds, content_tags: same rules as upstream (all access only where the content's
--   project is the current mind's), USING and WITH CHECK, via public.owns_content().
-- * audience_profiles: closes upstream's TODO. New column owner_mind_id. Read by its owner
--   and by creators of projects that target it; inserted, updated and deleted by its owner
--   only. Upstream's "anyone authenticated reads and inserts" policies are dropped.
-- * content_projects: as upstream, plus one rule that keeps the previous point honest: a
--   project may only target an audience profile its creator can read (otherwise anyone who
--   learnt an audience id could point a project at it and so gain read access to it).
-- * anon: every privilege on the CreatorOS tables and the view is revoked (on Supabase anon
--   has them through default privileges; RLS already gave it no rows, now it is refused).
-- * An index on every column a policy filters on (see the index section).
--
-- The table owner, superusers and BYPASSRLS roles (service_role, syncd_writer) are not
-- subject to any of this. Brownfield-safe and re-runnable: drop policy if exists + create
-- policy, create or replace function, create index if not exists, add column if not exists.

-- Helpers -------------------------------------------------------------------------------------
-- Security definer: they run as their owner (whoever applies the migrations, normally the
-- tables' owner), which RLS does not apply to. search_path is empty, every name qualified.

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

-- audience_profiles: ownership ----------------------------------------------------------------

alter table public.audience_profiles
  add column if not exists owner_mind_id uuid references public.minds (id) on delete set null;

-- Indexes for the policies ------------------------------------------------------------------
-- Already there: content_projects (creator_mind_id) and (persona_mind_id), partial where not
-- null (a policy's "= value" implies not null, so they apply); contents (id), user_profiles
-- (id), content_minds / content_tags (content_id, ...) primary keys.

create index if not exists idx_audience_profiles_owner_mind
  on public.audience_profiles (owner_mind_id)
  where owner_mind_id is not null;

create index if not exists idx_content_projects_target_audience
  on public.content_projects (target_audience_id)
  where target_audience_id is not null;

-- contents_read_published: status = 'published' and deleted_at is null.
create index if not exists idx_contents_published
  on public.contents (project_id)
  where status = 'published' and deleted_at is null;

-- contents_rw_by_project filters on project_id. idx_contents_project covers it when it is a
-- plain btree on (project_id, ...); upstream's production index of that name can be a
-- partial one (where ai_generated and deleted_at is null), which does not. Create our own
-- only when no usable index exists, so that a fresh database has no duplicate.
do $$
begin
  if not exists (
    select 1
    from pg_catalog.pg_index i
    join pg_catalog.pg_class ic on ic.oid = i.indexrelid
    join pg_catalog.pg_am am on am.oid = ic.relam
    join pg_catalog.pg_attribute a
      on a.attrelid = i.indrelid and a.attnum = i.indkey[0] and a.attname = 'project_id'
    where i.indrelid = 'public.contents'::regclass
      and am.amname = 'btree'
      and i.indpred is null
      and i.indisvalid
  ) then
    create index if not exists idx_contents_project_rls on public.contents (project_id);
  end if;
end
$$;

-- Policies ------------------------------------------------------------------------------------

-- content_projects: read/write own (creator); a written row may only target an audience
-- profile the writer can read (audience_profiles' policies apply inside the subquery).
-- content_projects_read_as_persona (read-only for the persona mind) stays as 000300 made it.
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

-- anon reads and writes nothing here: no policy admits it, and now no privilege either.
revoke all
  on public.audience_profiles, public.content_projects, public.contents,
     public.content_minds, public.content_tags, public.v_contents_with_creators
  from anon;
