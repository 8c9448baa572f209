-- provides: syncd.reclaimed_slugs.slug, creatoros_private.contents_slug_namespace(), creatoros_private.slug_of_another_project(), creatoros_private.published_project_ids()
-- Tenants (issue 18, items 4 and 5): no tenant can block or take another's file, and a
-- published lesson is readable with its context.
--
-- What changes, and why:
-- * syncd's slug namespace. contents.slug is unique across the whole table (upstream's
--   index: it stays), and syncd derives a file's slug from its course and path
--   (`<course>--<path>-<hash>`), which anyone can compute. A signed-in user could insert a
--   row of their own with the slug of another creator's next lesson and so keep that file
--   out of the database for ever. Now a slug holding "--" (a course slug never does, so the
--   part before it names a course) is syncd's: only syncd's writer (a member of
--   syncd_writer) and the tables' owner may insert one or change a slug into one. Every
--   other role, authenticated and service_role included, is refused (42501). Stateless on
--   purpose: it covers courses that do not exist yet. Rows that already hold such a slug
--   (made before this migration) are taken back by syncd when a file needs the slug, and
--   recorded in syncd.reclaimed_slugs.
-- * The legacy slugs of a course (`<course>-outline`, `<course>-modulo-<n>`,
--   `<course>-licao-<m>-<n>`) are reserved the same way for the project whose slug is
--   <course>, once it exists: nobody else may insert one or change a slug into one. (Before
--   the project exists they cannot be: "-outline" is an ordinary word; syncd then uses the
--   `<course>--outline` / `<course>--module-<n>` forms, which are syncd's.)
-- * Published means readable in context: a signed-in user who reads a published lesson of
--   another creator also reads the project it belongs to (its name, slug and the rest of the
--   project row) and that project's structure: its outline and modules (a book's outline
--   and parts), the rows a lesson hangs in. The outline's text is the course's curriculum,
--   which names every module anyway. Nothing else of that project opens: draft lessons,
--   other outputs, the audience profile and the tag and mind links stay as they were. The
--   view v_contents_with_creators, which joins the project and its minds, now shows the
--   project's name and the creator's and persona's names for every row it shows.
--
-- The helpers that look across tenants run with their owner's rights (a signed-in user
-- cannot read the other project to decide): they live in creatoros_private, which PostgREST
-- does not expose, and return ids or a yes/no only. The trigger function itself runs as the caller, so that it knows who writes.
--
-- Brownfield-safe and re-runnable: create or replace, drop ... if exists + create.

-- syncd.reclaimed_slugs: what syncd took back -------------------------------------------------
-- A row that holds a slug of syncd's namespace without syncd having written it (made before
-- this migration, or by the tables' owner) gives the slug up when a file of that course
-- needs it: it keeps its id and everything else, and gets a new slug. Recorded here so that
-- an operator can tell that row's owner.

create table if not exists syncd.reclaimed_slugs (
  content_id uuid not null,             -- the row that gave the slug up (no foreign key: kept
                                        -- after that row is deleted)
  slug text not null,                   -- the slug it held
  new_slug text not null,               -- the slug it got
  project_id uuid,                      -- its project then
  course text not null,                 -- the course folder whose file took the slug
  file_path text,                       -- that file
  reclaimed_at timestamptz not null default now()
);
create index if not exists idx_syncd_reclaimed_slugs_content
  on syncd.reclaimed_slugs (content_id);

grant select, insert on syncd.reclaimed_slugs to syncd_writer;

-- The slug namespaces -------------------------------------------------------------------------

-- Whether `slug` is a legacy slug (<course>-outline, -modulo-<n>, -licao-<m>-<n>) of a
-- project other than `project_id`. Owner's rights: the caller cannot see that project.
create or replace function creatoros_private.slug_of_another_project(slug text, project_id uuid)
  returns boolean
  language sql
  stable
  security definer
  set search_path = ''
  as $$
    select exists (
      select 1 from public.content_projects p
      where p.slug = substring(
              slug_of_another_project.slug
              from '^(.+)-(?:outline|modulo-[0-9]+|licao-[0-9]+-[0-9]+)$')
        and p.id is distinct from slug_of_another_project.project_id
    )
  $$;
revoke all on function creatoros_private.slug_of_another_project(text, uuid) from public, anon;
grant execute on function creatoros_private.slug_of_another_project(text, uuid)
  to authenticated, service_role;

-- Refuses a contents slug of syncd's namespace, or a legacy slug of another project, to
-- every role but syncd's writer and the tables' owner. SECURITY INVOKER: current_user is
-- whoever writes (SET ROLE authenticated, service_role, syncd's login...).
create or replace function creatoros_private.contents_slug_namespace() returns trigger
  language plpgsql
  security invoker
  set search_path = ''
  as $$
  declare
    owner oid;
  begin
    if tg_op = 'UPDATE' and new.slug is not distinct from old.slug then
      return new;
    end if;
    select c.relowner into owner from pg_catalog.pg_class c where c.oid = tg_relid;
    if pg_catalog.pg_has_role(current_user, owner, 'MEMBER')
       or (exists (select 1 from pg_catalog.pg_roles where rolname = 'syncd_writer')
           and pg_catalog.pg_has_role(current_user, 'syncd_writer', 'MEMBER')) then
      return new;
    end if;
    if strpos(new.slug, '--') > 0 then
      raise exception 'contents slug % is reserved for syncd', pg_catalog.quote_literal(new.slug)
        using errcode = 'insufficient_privilege',
              detail = 'A slug holding "--" names a file of a synced course'
                       ' (<course>--<file>): only syncd writes such slugs.',
              hint = 'Choose a slug without "--".';
    end if;
    if new.slug ~ '-(outline|modulo-[0-9]+|licao-[0-9]+-[0-9]+)$'
       and creatoros_private.slug_of_another_project(new.slug, new.project_id) then
      raise exception 'contents slug % belongs to another project''s course',
        pg_catalog.quote_literal(new.slug)
        using errcode = 'insufficient_privilege',
              detail = '<course>-outline, <course>-modulo-<n> and <course>-licao-<m>-<n> name'
                       ' the rows of the project whose slug is <course>.',
              hint = 'Choose another slug.';
    end if;
    return new;
  end;
  $$;
revoke all on function creatoros_private.contents_slug_namespace() from public, anon;

drop trigger if exists contents_slug_namespace on public.contents;
create trigger contents_slug_namespace
  before insert or update of slug on public.contents
  for each row
  execute function creatoros_private.contents_slug_namespace();

-- Published means readable in context ---------------------------------------------------------
-- Owner's rights: the policies of contents read content_projects, whose policy calls this:
-- read as the caller, they would recurse. It returns ids only. A restrictive policy
-- production adds to contents does not apply inside it: a project opens with any published,
-- non-deleted row.

-- Projects with a published, non-deleted row: a loose index scan of idx_contents_published
-- (one probe per such project, however many rows they publish); once per statement.
create or replace function creatoros_private.published_project_ids() returns uuid[]
  language sql
  stable
  security definer
  set search_path = ''
  as $$
    with recursive p (id) as (
      (select c.project_id from public.contents c
       where c.status = 'published' and c.deleted_at is null and c.project_id is not null
       order by c.project_id limit 1)
      union all
      select (select c.project_id from public.contents c
              where c.status = 'published' and c.deleted_at is null and c.project_id > p.id
              order by c.project_id limit 1)
      from p where p.id is not null
    )
    select coalesce(array_agg(p.id), '{}'::uuid[]) from p where p.id is not null
  $$;

revoke all on function creatoros_private.published_project_ids() from public, anon;
grant execute on function creatoros_private.published_project_ids() to authenticated, service_role;

-- The structure rows of a project (the outline and modules a lesson hangs in; a book's
-- outline and parts), for the policy's third rule.
create index if not exists idx_contents_structure
  on public.contents (project_id)
  where content_type in ('course_outline', 'course_module', 'book_outline', 'book_part')
    and deleted_at is null;

-- content_projects: the creator and the persona read; every signed-in user reads a project
-- with a published row. (Writes stay the creator's: 000800's policies.)
drop policy if exists content_projects_select on public.content_projects;
create policy content_projects_select on public.content_projects
  for select to authenticated
  using (
    creator_mind_id = (select creatoros_private.current_mind_id())
    or persona_mind_id = (select creatoros_private.current_mind_id())
    or id = any ((select creatoros_private.published_project_ids())::uuid[])
  );

-- contents: the owner reads its rows; every signed-in user reads published, non-deleted rows
-- and the structure (outline, modules) of their projects: where a published lesson sits.
drop policy if exists contents_select on public.contents;
create policy contents_select on public.contents
  for select to authenticated
  using (
    project_id = any ((select creatoros_private.owned_project_ids())::uuid[])
    or (status = 'published' and deleted_at is null)
    or (
      content_type in ('course_outline', 'course_module', 'book_outline', 'book_part')
      and deleted_at is null
      and project_id = any ((select creatoros_private.published_project_ids())::uuid[])
    )
  );
