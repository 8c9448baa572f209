-- provides: creatoros_private.owns_content(), creatoros_private.contents_parent_in_same_project()
-- Supabase for real: everything this chain creates or alters passes Supabase's database
-- linter, nothing an API role holds can bypass row-level security, syncd writes without
-- BYPASSRLS, and a content tree stays inside its project.
--
-- What changes, and why:
-- * Policy helpers move to schema creatoros_private, which PostgREST does not expose: a
--   SECURITY DEFINER function in public is callable by anyone as /rest/v1/rpc/<name>.
--   public.current_mind_id() stays (upstream's API) but as upstream wrote it: SECURITY
--   INVOKER, reading user_profiles under the caller's own rights.
-- * One permissive policy per role and action (Supabase evaluates every permissive policy
--   of a role for every row, and its linter flags two): the creator and persona rules of
--   content_projects, the owner and "published" rules of contents and the owner and target
--   rules of audience_profiles become one SELECT policy each, plus INSERT, UPDATE and
--   DELETE policies for the owner.
-- * syncd_writer gets one policy per table it writes ("for all to syncd_writer", true):
--   the role needs no BYPASSRLS, which only a superuser can grant on PostgreSQL 15.
-- * The shared tables this chain creates when they are missing (minds, tags,
--   user_profiles, job_executions) get RLS. Policies for the app: minds and tags readable
--   by signed-in users, a mind renamed only by its own user, a profile read only by its own
--   user, job executions readable. Where such a table already has policies of its own (as
--   in production), none are added: a permissive policy can only widen access.
-- * TRUNCATE, TRIGGER and REFERENCES ignore RLS: anon and authenticated lose them on every
--   table and view the chain creates or alters (Supabase's default privileges grant them).
--   anon also loses every write, and the sequence.
-- * A content row's parent must be in the same project: a deferred constraint trigger
--   (foreign keys ignore RLS, so without it a creator could hang a row under another
--   tenant's tree). Deferred, so that a transaction may move a tree in any order.
--
-- Brownfield-safe and re-runnable: drop policy if exists + create policy, create or replace
-- function, enable RLS (a no-op where on), policies added to shared tables only when they
-- have none. Policies with other names than the ones below are left as they are.

-- Private helpers -------------------------------------------------------------------------------
-- Only current_mind_id() runs with its owner's rights (the caller may not read
-- user_profiles). The others read content_projects and contents as the caller, under the
-- caller's policies: a helper that bypassed them would also bypass any restrictive policy
-- production adds to those tables (000500's SECURITY DEFINER helpers did; a brownfield test
-- caught it). No cycle: contents' and the link tables' policies read content_projects,
-- whose policies read only user_profiles (through current_mind_id) and audience_profiles,
-- whose policies read content_projects' creator rule only.

create schema if not exists creatoros_private;
revoke all on schema creatoros_private from public;
grant usage on schema creatoros_private to authenticated, service_role;

-- The mind of the signed-in auth user. SECURITY DEFINER so that policies can call it
-- without the caller reading user_profiles.
create or replace function creatoros_private.current_mind_id() returns uuid
  language sql
  stable
  security definer
  set search_path = ''
  as $$
    select mind_id from public.user_profiles where id = (select auth.uid())
  $$;

-- Ids of the projects the current mind created ('{}' without a signed-in mind).
create or replace function creatoros_private.owned_project_ids() returns uuid[]
  language sql
  stable
  security invoker
  set search_path = ''
  as $$
    select coalesce(array_agg(p.id), '{}'::uuid[])
    from public.content_projects p
    where p.creator_mind_id = (select creatoros_private.current_mind_id())
  $$;

-- Ids of the audience profiles that projects created by the current mind target.
create or replace function creatoros_private.targeted_audience_ids() returns uuid[]
  language sql
  stable
  security invoker
  set search_path = ''
  as $$
    select coalesce(array_agg(distinct p.target_audience_id), '{}'::uuid[])
    from public.content_projects p
    where p.creator_mind_id = (select creatoros_private.current_mind_id())
      and p.target_audience_id is not null
  $$;

-- Whether the content row belongs to a project the current mind created (link tables).
create or replace function creatoros_private.owns_content(content_id uuid) returns boolean
  language sql
  stable
  security invoker
  set search_path = ''
  as $$
    select exists (
      select 1
      from public.contents c
      join public.content_projects p on p.id = c.project_id
      where c.id = owns_content.content_id
        and p.creator_mind_id = (select creatoros_private.current_mind_id())
    )
  $$;

revoke all on all functions in schema creatoros_private from public, anon;
grant execute on function
  creatoros_private.current_mind_id(), creatoros_private.owned_project_ids(),
  creatoros_private.targeted_audience_ids(), creatoros_private.owns_content(uuid)
  to authenticated, service_role;

-- upstream's public.current_mind_id(), as upstream defines it: the caller's own rights.
create or replace function public.current_mind_id() returns uuid
  language sql
  stable
  security invoker
  set search_path = ''
  as $$
    select mind_id from public.user_profiles where id = (select auth.uid())
  $$;

-- CreatorOS policies: one permissive policy per role and action ------------------------------

-- content_projects: the creator reads and writes; the persona reads. A written row may only
-- target an audience profile the writer can read (audience_profiles' policies apply inside
-- the subquery), or anyone who learnt a profile's id could open it to themselves.
drop policy if exists content_projects_rw_mine on public.content_projects;
drop policy if exists content_projects_read_as_persona on public.content_projects;

drop policy if exists content_projects_select on public.content_projects;
create policy content_projects_select on public.content_projects
  for select to authenticated
  using (
    creator_mind_id = (select creatoros_private.current_mind_id())
    or persona_mind_id = (select creatoros_private.current_mind_id())
  );

drop policy if exists content_projects_insert on public.content_projects;
create policy content_projects_insert on public.content_projects
  for insert to authenticated
  with check (
    creator_mind_id = (select creatoros_private.current_mind_id())
    and (
      target_audience_id is null
      or exists (select 1 from public.audience_profiles a where a.id = target_audience_id)
    )
  );

drop policy if exists content_projects_update on public.content_projects;
create policy content_projects_update on public.content_projects
  for update to authenticated
  using (creator_mind_id = (select creatoros_private.current_mind_id()))
  with check (
    creator_mind_id = (select creatoros_private.current_mind_id())
    and (
      target_audience_id is null
      or exists (select 1 from public.audience_profiles a where a.id = target_audience_id)
    )
  );

drop policy if exists content_projects_delete on public.content_projects;
create policy content_projects_delete on public.content_projects
  for delete to authenticated
  using (creator_mind_id = (select creatoros_private.current_mind_id()));

-- contents: read and write in own projects; every signed-in user reads published,
-- non-deleted rows. `project_id = any (<array>)` is an index condition; the ::uuid[] cast
-- keeps `= any ((select f())...)` from being the subquery form.
drop policy if exists contents_rw_by_project on public.contents;
drop policy if exists contents_read_published on public.contents;

drop policy if exists contents_select on public.contents;
create policy contents_select on public.contents
  for select to authenticated
  using (
    project_id = any ((select creatoros_private.owned_project_ids())::uuid[])
    or (status = 'published' and deleted_at is null)
  );

drop policy if exists contents_insert on public.contents;
create policy contents_insert on public.contents
  for insert to authenticated
  with check (project_id = any ((select creatoros_private.owned_project_ids())::uuid[]));

drop policy if exists contents_update on public.contents;
create policy contents_update on public.contents
  for update to authenticated
  using (project_id = any ((select creatoros_private.owned_project_ids())::uuid[]))
  with check (project_id = any ((select creatoros_private.owned_project_ids())::uuid[]));

drop policy if exists contents_delete on public.contents;
create policy contents_delete on public.contents
  for delete to authenticated
  using (project_id = any ((select creatoros_private.owned_project_ids())::uuid[]));

-- audience_profiles: the owner does everything; creators of projects that target a profile
-- read it.
drop policy if exists audience_profiles_rw_own on public.audience_profiles;
drop policy if exists audience_profiles_read_as_target on public.audience_profiles;
drop policy if exists audience_profiles_read_all on public.audience_profiles;
drop policy if exists audience_profiles_write_all on public.audience_profiles;

drop policy if exists audience_profiles_select on public.audience_profiles;
create policy audience_profiles_select on public.audience_profiles
  for select to authenticated
  using (
    owner_mind_id = (select creatoros_private.current_mind_id())
    or id = any ((select creatoros_private.targeted_audience_ids())::uuid[])
  );

drop policy if exists audience_profiles_insert on public.audience_profiles;
create policy audience_profiles_insert on public.audience_profiles
  for insert to authenticated
  with check (owner_mind_id = (select creatoros_private.current_mind_id()));

drop policy if exists audience_profiles_update on public.audience_profiles;
create policy audience_profiles_update on public.audience_profiles
  for update to authenticated
  using (owner_mind_id = (select creatoros_private.current_mind_id()))
  with check (owner_mind_id = (select creatoros_private.current_mind_id()));

drop policy if exists audience_profiles_delete on public.audience_profiles;
create policy audience_profiles_delete on public.audience_profiles
  for delete to authenticated
  using (owner_mind_id = (select creatoros_private.current_mind_id()));

-- Link tables: through their parent content row, for reads and writes (one "for all").
drop policy if exists content_minds_via_content on public.content_minds;
create policy content_minds_via_content on public.content_minds
  for all to authenticated
  using (creatoros_private.owns_content(content_id))
  with check (creatoros_private.owns_content(content_id));

drop policy if exists content_tags_via_content on public.content_tags;
create policy content_tags_via_content on public.content_tags
  for all to authenticated
  using (creatoros_private.owns_content(content_id))
  with check (creatoros_private.owns_content(content_id));

drop function if exists public.owned_project_ids();
drop function if exists public.targeted_audience_ids();
drop function if exists public.owns_content(uuid);

-- Shared tables: RLS, and the app's policies where the table has none of its own ------------

alter table public.minds enable row level security;
alter table public.tags enable row level security;
alter table public.user_profiles enable row level security;
alter table public.job_executions enable row level security;

-- A policy is syncd's when it carries syncd's comment: a production policy that happens to
-- have one of these names is not replaced.
do $$
declare
  mark constant text := 'syncd: app policy for a shared table (20251201000800)';
  t text;
begin
  foreach t in array array['minds', 'tags', 'user_profiles', 'job_executions'] loop
    if exists (
      select 1 from pg_catalog.pg_policy p
      where p.polrelid = format('public.%I', t)::regclass
        and p.polname <> 'syncd_writer_all'
        and coalesce(obj_description(p.oid, 'pg_policy'), '') <> mark
    ) then
      raise notice 'public.% has policies of its own: syncd adds none for the app', t;
      continue;
    end if;
    case t
      when 'minds' then
        drop policy if exists minds_select on public.minds;
        create policy minds_select on public.minds
          for select to authenticated using (true);
        drop policy if exists minds_update_own on public.minds;
        create policy minds_update_own on public.minds
          for update to authenticated
          using (id = (select creatoros_private.current_mind_id()))
          with check (id = (select creatoros_private.current_mind_id()));
        execute format('comment on policy minds_select on public.minds is %L', mark);
        execute format('comment on policy minds_update_own on public.minds is %L', mark);
        -- A user edits how their mind is shown, never its slug or id: syncd finds creators
        -- and personas by slug, so a taken-over slug would hand over that course.
        revoke update on public.minds from authenticated;
        grant select, update (display_name, short_bio, primary_language, privacy_level)
          on public.minds to authenticated;
      when 'tags' then
        drop policy if exists tags_select on public.tags;
        create policy tags_select on public.tags
          for select to authenticated using (true);
        execute format('comment on policy tags_select on public.tags is %L', mark);
        grant select on public.tags to authenticated;
      when 'user_profiles' then
        drop policy if exists user_profiles_select_own on public.user_profiles;
        create policy user_profiles_select_own on public.user_profiles
          for select to authenticated using (id = (select auth.uid()));
        execute format(
          'comment on policy user_profiles_select_own on public.user_profiles is %L', mark
        );
        grant select on public.user_profiles to authenticated;
      when 'job_executions' then
        drop policy if exists job_executions_select on public.job_executions;
        create policy job_executions_select on public.job_executions
          for select to authenticated using (true);
        execute format(
          'comment on policy job_executions_select on public.job_executions is %L', mark
        );
        grant select on public.job_executions to authenticated;
    end case;
  end loop;
end
$$;

-- syncd_writer: every row of the tables it writes, through its own policy -----------------------

do $$
declare
  t text;
begin
  foreach t in array array[
    'content_projects', 'contents', 'audience_profiles', 'content_minds', 'content_tags',
    'minds', 'tags'
  ] loop
    execute format('drop policy if exists syncd_writer_all on public.%I', t);
    execute format(
      'create policy syncd_writer_all on public.%I for all to syncd_writer'
      ' using (true) with check (true)', t
    );
  end loop;
end
$$;

-- Privileges that ignore RLS -----------------------------------------------------------------

revoke truncate, trigger, references
  on public.content_projects, public.contents, public.audience_profiles,
     public.content_minds, public.content_tags, public.minds, public.tags,
     public.user_profiles, public.job_executions, public.v_contents_with_creators
  from public, anon, authenticated;

revoke insert, update, delete
  on public.minds, public.tags, public.user_profiles, public.job_executions
  from public, anon;
revoke all on sequence public.tags_id_seq from public, anon;
revoke usage, update on sequence public.tags_id_seq from authenticated;
revoke all on function public.current_mind_id() from public, anon;
grant execute on function public.current_mind_id() to authenticated, service_role;

-- A content tree stays inside its project ----------------------------------------------------

-- Reads the rows as they are at commit (the trigger is deferred, and the row may have
-- changed since the event), as its owner: the parent may be invisible to the caller, and
-- foreign keys ignore RLS, so this check must too. The message names no other project.
create or replace function creatoros_private.contents_parent_in_same_project() returns trigger
  language plpgsql
  security definer
  set search_path = ''
  as $$
  declare
    row_project uuid;
    row_parent uuid;
    parent_project uuid;
  begin
    select c.project_id, c.parent_content_id into row_project, row_parent
    from public.contents c where c.id = new.id;
    if not found then
      return null;
    end if;
    -- FOR SHARE: a concurrent transaction moving the parent to another project waits for
    -- this one (and then sees this child), or this one sees the moved parent.
    select p.project_id into parent_project
    from public.contents p where p.id = row_parent
    for share;
    if row_parent is not null and found and parent_project is distinct from row_project then
      raise exception 'content % cannot have parent %: a parent must be in the same project',
        new.id, row_parent
        using errcode = 'check_violation';
    end if;
    if exists (
      select 1 from public.contents c
      where c.parent_content_id = new.id and c.project_id is distinct from row_project
    ) then
      raise exception 'content % cannot move to another project than its children', new.id
        using errcode = 'check_violation';
    end if;
    return null;
  end;
  $$;
revoke all on function creatoros_private.contents_parent_in_same_project() from public, anon;

drop trigger if exists contents_parent_in_same_project_ins on public.contents;
create constraint trigger contents_parent_in_same_project_ins
  after insert on public.contents
  deferrable initially deferred
  for each row
  when (new.parent_content_id is not null)
  execute function creatoros_private.contents_parent_in_same_project();

drop trigger if exists contents_parent_in_same_project_upd on public.contents;
create constraint trigger contents_parent_in_same_project_upd
  after update of id, parent_content_id, project_id on public.contents
  deferrable initially deferred
  for each row
  when (
    old.parent_content_id is distinct from new.parent_content_id
    or old.project_id is distinct from new.project_id
    or old.id is distinct from new.id  -- the check finds the row by its final id
  )
  execute function creatoros_private.contents_parent_in_same_project();

-- The children lookup above, and the cascade of parent_content_id's foreign key.
create index if not exists idx_contents_parent_content_id
  on public.contents (parent_content_id);

-- Foreign keys without a covering index (the linter's unindexed_foreign_keys): deleting a
-- job execution or a project must not scan these tables.
create index if not exists idx_contents_generation_execution
  on public.contents (generation_execution_id)
  where generation_execution_id is not null;
create index if not exists idx_syncd_courses_project on syncd.courses (project_id);
