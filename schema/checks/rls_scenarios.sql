-- Row-level security and the syncd_writer role, checked by impersonation.
--
--   psql -v ON_ERROR_STOP=1 -f schema/checks/rls_scenarios.sql "$DATABASE_URL"
--
-- Run it as the schema owner (postgres on Supabase) against a database that has syncd's
-- migrations applied (through 20251201001300): a real Supabase or the plain PostgreSQL
-- syncd builds. Everything happens in one transaction that ends in ROLLBACK: the fixture
-- rows (slugs and e-mails start with rls-check-) and every write a check makes are gone
-- afterwards. It prints one line per scenario, "PASS <scenario>" or
-- "FAIL <scenario>: <the checks that failed>", then a count. tests/test_rls.py runs it,
-- and proves the same scenarios in Python.
--
-- Impersonation is what PostgREST does: SET LOCAL ROLE authenticated (or anon,
-- service_role) with the JWT claims in request.jwt.claims, read by auth.uid(). Each check
-- runs one statement that way inside a subtransaction and then undoes it, so checks do not
-- see each other's writes.
--
-- One side effect survives the rollback: the last scenario ANALYZEs contents and
-- content_projects (with a few thousand fixture rows in them, so that the planner's choice
-- means something), and ANALYZE updates pg_class.reltuples/relpages in place. The next
-- autovacuum/autoanalyze corrects them.

\set ON_ERROR_STOP 1
\set QUIET 1
\pset pager off

begin;

-- Harness ---------------------------------------------------------------------------------

create temporary table rls_check_results (
  n serial primary key,
  scenario text not null,
  what text not null,
  ok boolean not null,
  detail text
);

create procedure pg_temp.expect(scenario text, what text, ok boolean, detail text default null)
  language plpgsql
  as $$
  begin
    insert into pg_temp.rls_check_results (scenario, what, ok, detail)
    values (scenario, what, coalesce(ok, false), detail);
  end
  $$;

-- Runs stmt as role_name (with the claims of auth user sub, if given) and undoes it. n: rows
-- returned or affected; state and message: the error, if it failed.
create function pg_temp.run_as(
  role_name text, sub text, stmt text, out n bigint, out state text, out message text
)
  language plpgsql
  as $$
  begin
    perform set_config('request.jwt.claims',
      case when sub is null then json_build_object('role', role_name)::text
           else json_build_object('sub', sub, 'role', role_name)::text end, true);
    perform set_config('role', role_name, true);
    begin
      execute stmt;
      get diagnostics n = row_count;
      raise exception using errcode = 'XRLS0';  -- undo what it did
    exception
      when sqlstate 'XRLS0' then
        null;
      when others then
        n := null;
        state := sqlstate;
        message := sqlerrm;
    end;
    perform set_config('role', 'none', true);
    perform set_config('request.jwt.claims', '', true);
  end
  $$;

-- expected: '<n>' (succeeds, n rows returned or affected), 'ok' (succeeds), 'rls' (refused
-- by a row-level security policy), 'denied' (refused for lack of a privilege), 'slug'
-- (refused by the slug namespace check: a slug of syncd's or of another project's course).
create procedure pg_temp.check(
  scenario text, what text, role_name text, sub text, stmt text, expected text
)
  language plpgsql
  as $$
  declare
    r record;
    ok boolean;
  begin
    select * into r from pg_temp.run_as(role_name, sub, stmt);
    ok := case expected
      when 'ok' then r.state is null
      when 'rls' then r.state = '42501' and r.message like '%row-level security%'
      when 'denied' then r.state = '42501' and r.message like 'permission denied%'
      when 'slug' then r.state = '42501' and r.message like 'contents slug %'
      else r.state is null and r.n = expected::bigint
    end;
    call pg_temp.expect(scenario, what, ok,
      case when r.state is null then format('expected %s, got %s rows', expected, r.n)
           else format('expected %s, got %s %s', expected, r.state, r.message) end);
  end
  $$;

-- The plan of query as role_name/sub, one line per plan line.
create function pg_temp.plan_as(role_name text, sub text, query text) returns text
  language plpgsql
  as $$
  declare
    line text;
    plan text := '';
  begin
    perform set_config('request.jwt.claims',
      json_build_object('sub', sub, 'role', role_name)::text, true);
    perform set_config('role', role_name, true);
    for line in execute 'explain ' || query loop
      plan := plan || line || E'\n';
    end loop;
    perform set_config('role', 'none', true);
    perform set_config('request.jwt.claims', '', true);
    return plan;
  end
  $$;

-- SET ROLE needs membership of the role. A superuser has it; elsewhere (Supabase's postgres)
-- a role it may not switch to yet is granted to it here, and that grant is rolled back with
-- everything else. If even that is refused, the checks run as that role report it.
do $$
declare
  r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role', 'syncd_writer'] loop
    begin
      perform set_config('role', r, true);
      perform set_config('role', 'none', true);
    exception when others then
      begin
        execute format('grant %I to %I', r, session_user);
      exception when others then
        raise warning 'cannot become %: %', r, sqlerrm;
      end;
    end;
  end loop;
end
$$;

-- Fixture ---------------------------------------------------------------------------------
-- Creators ana (A) and bia (B); pia is the persona of A's course; olga owns an audience
-- profile that B's project targets; ze is signed in and owns nothing; nobody is an auth
-- user without a mind.

select
  gen_random_uuid() as user_ana, gen_random_uuid() as user_bia,
  gen_random_uuid() as user_pia, gen_random_uuid() as user_olga,
  gen_random_uuid() as user_ze, gen_random_uuid() as user_nobody,
  gen_random_uuid() as mind_ana, gen_random_uuid() as mind_bia,
  gen_random_uuid() as mind_pia, gen_random_uuid() as mind_olga, gen_random_uuid() as mind_ze,
  gen_random_uuid() as aud_a, gen_random_uuid() as aud_spare,
  gen_random_uuid() as aud_o, gen_random_uuid() as aud_free,
  gen_random_uuid() as project_a, gen_random_uuid() as project_a2,
  gen_random_uuid() as project_b,
  gen_random_uuid() as a_outline, gen_random_uuid() as a_draft,
  gen_random_uuid() as a_published, gen_random_uuid() as a_published_deleted,
  gen_random_uuid() as a_draft_deleted,
  gen_random_uuid() as b_outline, gen_random_uuid() as b_published
\gset

insert into auth.users (id, email) values
  (:'user_ana', 'rls-check-ana@example.invalid'),
  (:'user_bia', 'rls-check-bia@example.invalid'),
  (:'user_pia', 'rls-check-pia@example.invalid'),
  (:'user_olga', 'rls-check-olga@example.invalid'),
  (:'user_ze', 'rls-check-ze@example.invalid'),
  (:'user_nobody', 'rls-check-nobody@example.invalid');

insert into public.minds (id, slug, display_name) values
  (:'mind_ana', 'rls-check-ana', 'Ana'),
  (:'mind_bia', 'rls-check-bia', 'Bia'),
  (:'mind_pia', 'rls-check-pia', 'Pia'),
  (:'mind_olga', 'rls-check-olga', 'Olga'),
  (:'mind_ze', 'rls-check-ze', 'Zé');

-- A trigger on auth.users may already have made profiles: then they point at our minds now.
insert into public.user_profiles (id, mind_id) values
  (:'user_ana', :'mind_ana'), (:'user_bia', :'mind_bia'), (:'user_pia', :'mind_pia'),
  (:'user_olga', :'mind_olga'), (:'user_ze', :'mind_ze')
on conflict (id) do update set mind_id = excluded.mind_id;
delete from public.user_profiles where id = :'user_nobody';

insert into public.audience_profiles (id, slug, name, owner_mind_id) values
  (:'aud_a', 'rls-check-aud-a', 'A''s audience', :'mind_ana'),
  (:'aud_spare', 'rls-check-aud-spare', 'A''s spare audience', :'mind_ana'),
  (:'aud_o', 'rls-check-aud-o', 'Olga''s audience', :'mind_olga'),
  (:'aud_free', 'rls-check-aud-free', 'Ownerless audience', null);

insert into public.content_projects
  (id, slug, name, project_type, creator_mind_id, persona_mind_id, target_audience_id)
values
  (:'project_a', 'rls-check-a', 'A', 'course', :'mind_ana', :'mind_pia', :'aud_a'),
  (:'project_a2', 'rls-check-a2', 'A2', 'course', :'mind_ana', null, :'aud_free'),
  (:'project_b', 'rls-check-b', 'B', 'course', :'mind_bia', null, :'aud_o');

insert into public.contents
  (id, content_type, slug, title, project_id, parent_content_id, sequence_order, status,
   deleted_at)
values
  (:'a_outline', 'course_outline', 'rls-check-a-outline', 'A', :'project_a', null, null,
   'draft', null),
  (:'a_draft', 'course_lesson', 'rls-check-a-draft', 'A draft', :'project_a', :'a_outline', 1,
   'draft', null),
  (:'a_published', 'course_lesson', 'rls-check-a-published', 'A published', :'project_a',
   :'a_outline', 2, 'published', null),
  (:'a_published_deleted', 'course_lesson', 'rls-check-a-published-deleted',
   'A published, deleted', :'project_a', :'a_outline', 3, 'published', now()),
  (:'a_draft_deleted', 'course_lesson', 'rls-check-a-draft-deleted', 'A draft, deleted',
   :'project_a', :'a_outline', 4, 'draft', now()),
  (:'b_outline', 'course_outline', 'rls-check-b-outline', 'B', :'project_b', null, null,
   'draft', null),
  (:'b_published', 'course_lesson', 'rls-check-b-published', 'B published', :'project_b',
   :'b_outline', 1, 'published', null);

insert into public.tags (name, tag_type) values ('rls-check-tag', 'theme');
select id as tag from public.tags where name = 'rls-check-tag' \gset

insert into public.content_tags (content_id, tag_id)
select c.id, :tag from public.contents c where c.slug like 'rls-check-%';

insert into public.content_minds (content_id, mind_id, role)
select c.id, case when c.project_id = :'project_b' then :'mind_bia'::uuid
                  else :'mind_ana'::uuid end, 'creator'
from public.contents c where c.slug like 'rls-check-%'
union all
select :'a_outline', :'mind_pia', 'contributor';

-- The fixture's contents, as a list for IN (...).
select format('(%L, %L, %L, %L, %L)', :'a_outline', :'a_draft', :'a_published',
              :'a_published_deleted', :'a_draft_deleted') as a_contents \gset
select format('(%L, %L)', :'b_outline', :'b_published') as b_contents \gset

-- 1. Creators are isolated ---------------------------------------------------------------

\set s '''creators are isolated'''
call pg_temp.check(:s, 'B sees no project of A without a published row', 'authenticated',
  :'user_bia',
  format('select from public.content_projects where id = %L', :'project_a2'), '0');
call pg_temp.check(:s, 'B sees its own project', 'authenticated', :'user_bia',
  format('select from public.content_projects where id = %L', :'project_b'), '1');
call pg_temp.check(:s, 'B sees no unpublished content of A but the published row''s outline',
  'authenticated', :'user_bia',
  format('select from public.contents where id in %s and id not in (%L, %L)', :'a_contents',
         :'a_published', :'a_outline'), '0');
call pg_temp.check(:s, 'B sees no content_minds row of A', 'authenticated', :'user_bia',
  format('select from public.content_minds where content_id in %s', :'a_contents'), '0');
call pg_temp.check(:s, 'B sees no content_tags row of A', 'authenticated', :'user_bia',
  format('select from public.content_tags where content_id in %s', :'a_contents'), '0');
call pg_temp.check(:s, 'B sees none of A''s audience profiles', 'authenticated', :'user_bia',
  format('select from public.audience_profiles where id in (%L, %L)', :'aud_a', :'aud_spare'),
  '0');
call pg_temp.check(:s, 'B updates no project of A', 'authenticated', :'user_bia',
  format('update public.content_projects set name = ''x'' where id = %L', :'project_a'), '0');
call pg_temp.check(:s, 'B deletes no project of A', 'authenticated', :'user_bia',
  format('delete from public.content_projects where id = %L', :'project_a'), '0');
call pg_temp.check(:s, 'B updates no content of A, published or not', 'authenticated',
  :'user_bia', format('update public.contents set title = ''x'' where id in %s', :'a_contents'),
  '0');
call pg_temp.check(:s, 'B deletes no content of A', 'authenticated', :'user_bia',
  format('delete from public.contents where id in %s', :'a_contents'), '0');
call pg_temp.check(:s, 'B cannot insert into A''s project', 'authenticated', :'user_bia',
  format('insert into public.contents (content_type, slug, title, project_id)'
         ' values (''course_lesson'', ''rls-check-intruder'', ''x'', %L)', :'project_a'),
  'rls');
call pg_temp.check(:s, 'B cannot move its own content into A''s project', 'authenticated',
  :'user_bia',
  format('update public.contents set project_id = %L where id = %L', :'project_a',
         :'b_outline'),
  'rls');
call pg_temp.check(:s, 'B cannot create a project in A''s name', 'authenticated', :'user_bia',
  format('insert into public.content_projects (slug, name, creator_mind_id)'
         ' values (''rls-check-fake'', ''x'', %L)', :'mind_ana'),
  'rls');
call pg_temp.check(:s, 'B cannot hand its project over to A', 'authenticated', :'user_bia',
  format('update public.content_projects set creator_mind_id = %L where id = %L',
         :'mind_ana', :'project_b'),
  'rls');

-- 2. service_role sees and writes everything ---------------------------------------------

\set s '''service_role sees and writes everything'''
call pg_temp.check(:s, 'reads every fixture project', 'service_role', null,
  format('select from public.content_projects where id in (%L, %L, %L)', :'project_a',
         :'project_a2', :'project_b'), '3');
call pg_temp.check(:s, 'reads every fixture content, deleted or not', 'service_role', null,
  'select from public.contents where slug like ''rls-check-%''', '7');
call pg_temp.check(:s, 'reads every fixture link', 'service_role', null,
  'select from public.content_tags t join public.contents c on c.id = t.content_id'
  ' where c.slug like ''rls-check-%''', '7');
call pg_temp.check(:s, 'reads every fixture audience profile', 'service_role', null,
  'select from public.audience_profiles where slug like ''rls-check-%''', '4');
call pg_temp.check(:s, 'updates every fixture content', 'service_role', null,
  'update public.contents set title = title || ''!'' where slug like ''rls-check-%''', '7');
call pg_temp.check(:s, 'inserts into anyone''s project', 'service_role', null,
  format('insert into public.contents (content_type, slug, title, project_id)'
         ' values (''course_lesson'', ''rls-check-service'', ''x'', %L)', :'project_a'),
  '1');
call pg_temp.check(:s, 'deletes links', 'service_role', null,
  format('delete from public.content_minds where content_id in %s', :'a_contents'), '6');
call pg_temp.check(:s, 'inserts an ownerless audience profile', 'service_role', null,
  'insert into public.audience_profiles (slug, name) values (''rls-check-service'', ''x'')',
  '1');

-- 3. Published rows are public to authenticated users --------------------------------------

\set s '''published rows are public to authenticated users'''
call pg_temp.check(:s, 'a user without projects reads both published rows', 'authenticated',
  :'user_ze',
  format('select from public.contents where id in (%L, %L)', :'a_published', :'b_published'),
  '2');
call pg_temp.check(:s, '... and the outlines they hang under', 'authenticated', :'user_ze',
  format('select from public.contents where id in (%L, %L)', :'a_outline', :'b_outline'), '2');
call pg_temp.check(:s, '... and nothing else of the fixture', 'authenticated', :'user_ze',
  format('select from public.contents where (id in %s or id in %s) and id not in (%L, %L, %L, %L)',
         :'a_contents', :'b_contents', :'a_published', :'b_published', :'a_outline',
         :'b_outline'),
  '0');
call pg_temp.check(:s, 'the projects of published rows are read, by title and slug',
  'authenticated', :'user_ze',
  format('select p.name, p.slug from public.contents c'
         ' join public.content_projects p on p.id = c.project_id'
         ' where c.id in (%L, %L)', :'a_published', :'b_published'),
  '2');
call pg_temp.check(:s, '... not a project without one', 'authenticated', :'user_ze',
  format('select from public.content_projects where id = %L', :'project_a2'), '0');
call pg_temp.check(:s, '... and not for writing', 'authenticated', :'user_ze',
  format('update public.content_projects set name = ''x'' where id = %L', :'project_a'), '0');
call pg_temp.check(:s, 'an auth user without a mind reads them too', 'authenticated',
  :'user_nobody',
  format('select from public.contents where id in (%L, %L)', :'a_published', :'b_published'),
  '2');
call pg_temp.check(:s, 'a soft-deleted published row is not readable', 'authenticated',
  :'user_ze', format('select from public.contents where id = %L', :'a_published_deleted'), '0');
call pg_temp.check(:s, 'the view shows the same rows', 'authenticated', :'user_ze',
  format('select from public.v_contents_with_creators where id in %s or id in %s',
         :'a_contents', :'b_contents'),
  '4');
call pg_temp.check(:s, '... each with its project and creator names', 'authenticated',
  :'user_ze',
  format('select from public.v_contents_with_creators where (id in %s or id in %s)'
         ' and project_name is not null and creator_name is not null',
         :'a_contents', :'b_contents'),
  '4');
call pg_temp.check(:s, 'reading is not writing', 'authenticated', :'user_ze',
  format('update public.contents set title = ''x'' where id = %L', :'a_published'), '0');

-- 4. anon reads nothing ---------------------------------------------------------------------
-- Deliberately refused with "permission denied" (anon holds no privilege on these tables),
-- not merely filtered to zero rows.

\set s '''anon reads nothing'''
call pg_temp.check(:s, 'anon is refused on content_projects', 'anon', null,
  'select from public.content_projects', 'denied');
call pg_temp.check(:s, 'anon is refused on contents', 'anon', null,
  'select from public.contents', 'denied');
call pg_temp.check(:s, 'anon is refused on content_minds', 'anon', null,
  'select from public.content_minds', 'denied');
call pg_temp.check(:s, 'anon is refused on content_tags', 'anon', null,
  'select from public.content_tags', 'denied');
call pg_temp.check(:s, 'anon is refused on audience_profiles', 'anon', null,
  'select from public.audience_profiles', 'denied');
call pg_temp.check(:s, 'anon is refused on v_contents_with_creators', 'anon', null,
  'select from public.v_contents_with_creators', 'denied');
call pg_temp.check(:s, 'anon is refused even with a signed-in user''s claims', 'anon',
  :'user_ana', format('select from public.contents where id = %L', :'a_published'), 'denied');
call pg_temp.check(:s, 'anon cannot insert', 'anon', null,
  'insert into public.audience_profiles (slug, name) values (''rls-check-anon'', ''x'')',
  'denied');

-- 5. The persona reads the project, not its unpublished contents ---------------------------

\set s '''persona reads the project, not its drafts'''
call pg_temp.check(:s, 'the persona reads the project row', 'authenticated', :'user_pia',
  format('select from public.content_projects where id = %L', :'project_a'), '1');
call pg_temp.check(:s, 'the persona reads no unpublished content', 'authenticated',
  :'user_pia',
  format('select from public.contents where id in %s and id not in (%L, %L)', :'a_contents',
         :'a_published', :'a_outline'),
  '0');
call pg_temp.check(:s, 'the persona reads the published lesson', 'authenticated', :'user_pia',
  format('select from public.contents where id = %L', :'a_published'), '1');
call pg_temp.check(:s, 'the persona reads no links, not even its own', 'authenticated',
  :'user_pia',
  format('select from public.content_minds where content_id in %s', :'a_contents'), '0');
call pg_temp.check(:s, 'the persona cannot update the project', 'authenticated', :'user_pia',
  format('update public.content_projects set name = ''x'' where id = %L', :'project_a'), '0');
call pg_temp.check(:s, 'the persona cannot add content', 'authenticated', :'user_pia',
  format('insert into public.contents (content_type, slug, title, project_id)'
         ' values (''course_lesson'', ''rls-check-persona'', ''x'', %L)', :'project_a'),
  'rls');

-- 6. Link tables follow their parent content ----------------------------------------------

\set s '''link tables follow their parent'''
call pg_temp.check(:s, 'the owner reads every content_minds row of its contents',
  'authenticated', :'user_ana',
  format('select from public.content_minds where content_id in %s', :'a_contents'), '6');
call pg_temp.check(:s, 'the owner reads every content_tags row of its contents',
  'authenticated', :'user_ana',
  format('select from public.content_tags where content_id in %s', :'a_contents'), '5');
call pg_temp.check(:s, 'the owner reads no link of B''s contents', 'authenticated', :'user_ana',
  format('select from public.content_tags where content_id in %s', :'b_contents'), '0');
call pg_temp.check(:s, 'a published parent does not open its links', 'authenticated',
  :'user_bia',
  format('select from public.content_tags where content_id = %L', :'a_published'), '0');
call pg_temp.check(:s, 'the owner links a mind to its content', 'authenticated', :'user_ana',
  format('insert into public.content_minds (content_id, mind_id, role)'
         ' values (%L, %L, ''guest'')', :'a_draft', :'mind_ze'),
  '1');
call pg_temp.check(:s, 'the owner cannot link B''s content', 'authenticated', :'user_ana',
  format('insert into public.content_minds (content_id, mind_id, role)'
         ' values (%L, %L, ''guest'')', :'b_published', :'mind_ana'),
  'rls');
call pg_temp.check(:s, 'the owner updates its links', 'authenticated', :'user_ana',
  format('update public.content_minds set role = ''author'' where content_id = %L'
         ' and mind_id = %L', :'a_outline', :'mind_ana'),
  '1');
call pg_temp.check(:s, 'the owner cannot move a link onto B''s content', 'authenticated',
  :'user_ana',
  format('update public.content_minds set content_id = %L where content_id = %L',
         :'b_outline', :'a_draft'),
  'rls');
call pg_temp.check(:s, 'the owner deletes its links', 'authenticated', :'user_ana',
  format('delete from public.content_tags where content_id = %L', :'a_draft'), '1');
call pg_temp.check(:s, 'B deletes no link of A', 'authenticated', :'user_bia',
  format('delete from public.content_tags where content_id in %s', :'a_contents'), '0');
call pg_temp.check(:s, 'B cannot link itself to A''s content', 'authenticated', :'user_bia',
  format('insert into public.content_minds (content_id, mind_id, role)'
         ' values (%L, %L, ''co_author'')', :'a_published', :'mind_bia'),
  'rls');

-- 7. Audience profile ownership -----------------------------------------------------------

\set s '''audience profile ownership'''
call pg_temp.check(:s, 'the owner reads its profiles', 'authenticated', :'user_ana',
  format('select from public.audience_profiles where id in (%L, %L)', :'aud_a', :'aud_spare'),
  '2');
call pg_temp.check(:s, 'the owner updates its profile', 'authenticated', :'user_ana',
  format('update public.audience_profiles set name = ''x'' where id = %L', :'aud_a'), '1');
call pg_temp.check(:s, 'the owner deletes its profile', 'authenticated', :'user_ana',
  format('delete from public.audience_profiles where id = %L', :'aud_spare'), '1');
call pg_temp.check(:s, 'the owner inserts a profile it owns', 'authenticated', :'user_ana',
  format('insert into public.audience_profiles (slug, name, owner_mind_id)'
         ' values (''rls-check-new'', ''x'', %L)', :'mind_ana'),
  '1');
call pg_temp.check(:s, 'nobody inserts a profile owned by someone else', 'authenticated',
  :'user_ana',
  format('insert into public.audience_profiles (slug, name, owner_mind_id)'
         ' values (''rls-check-new'', ''x'', %L)', :'mind_bia'),
  'rls');
call pg_temp.check(:s, 'nobody inserts an ownerless profile', 'authenticated', :'user_ana',
  'insert into public.audience_profiles (slug, name) values (''rls-check-new'', ''x'')', 'rls');
call pg_temp.check(:s, 'the owner cannot give its profile away', 'authenticated', :'user_ana',
  format('update public.audience_profiles set owner_mind_id = %L where id = %L', :'mind_bia',
         :'aud_a'),
  'rls');
call pg_temp.check(:s, 'the creator of a targeting project reads the profile',
  'authenticated', :'user_bia',
  format('select from public.audience_profiles where id = %L', :'aud_o'), '1');
call pg_temp.check(:s, '... but does not update it', 'authenticated', :'user_bia',
  format('update public.audience_profiles set name = ''x'' where id = %L', :'aud_o'), '0');
call pg_temp.check(:s, '... nor delete it', 'authenticated', :'user_bia',
  format('delete from public.audience_profiles where id = %L', :'aud_o'), '0');
call pg_temp.check(:s, 'an ownerless profile is read through a targeting project',
  'authenticated', :'user_ana',
  format('select from public.audience_profiles where id = %L', :'aud_free'), '1');
call pg_temp.check(:s, '... and written by nobody', 'authenticated', :'user_ana',
  format('update public.audience_profiles set name = ''x'' where id = %L', :'aud_free'), '0');
call pg_temp.check(:s, 'others read none of them', 'authenticated', :'user_ze',
  'select from public.audience_profiles where slug like ''rls-check-%''', '0');
call pg_temp.check(:s, 'a project cannot target a profile its creator cannot read',
  'authenticated', :'user_bia',
  format('update public.content_projects set target_audience_id = %L where id = %L',
         :'aud_a', :'project_b'),
  'rls');
call pg_temp.check(:s, '... not even a new one', 'authenticated', :'user_bia',
  format('insert into public.content_projects (slug, name, creator_mind_id, target_audience_id)'
         ' values (''rls-check-b2'', ''x'', %L, %L)', :'mind_bia', :'aud_a'),
  'rls');
call pg_temp.check(:s, 'a project keeps targeting a profile it already targets',
  'authenticated', :'user_bia',
  format('update public.content_projects set name = ''B!'' where id = %L', :'project_b'), '1');
call pg_temp.check(:s, 'a project may target a profile its creator owns', 'authenticated',
  :'user_ana',
  format('update public.content_projects set target_audience_id = %L where id = %L',
         :'aud_spare', :'project_a2'),
  '1');

-- 8. syncd_writer can do what syncd needs -------------------------------------------------

\set s '''syncd_writer can do what syncd needs'''
select coalesce(missing = '{}', true) as ok,
       'missing: ' || coalesce(array_to_string(missing, ', '), 'nothing') as detail
from (
  select array_agg(format('%s on %s', p, o) order by o, p) filter (where not held) as missing
  from (
    select o, p, case
      when o like 'schema %' then has_schema_privilege('syncd_writer', substr(o, 8), p)
      when o like 'sequence %' then has_sequence_privilege('syncd_writer', substr(o, 10), p)
      else has_table_privilege('syncd_writer', o, p) end as held
    from (values
      ('schema public', 'USAGE'), ('schema syncd', 'USAGE'),
      ('public.content_projects', 'SELECT'), ('public.content_projects', 'INSERT'),
      ('public.content_projects', 'UPDATE'),
      ('public.contents', 'SELECT'), ('public.contents', 'INSERT'),
      ('public.contents', 'UPDATE'),
      ('public.audience_profiles', 'SELECT'), ('public.audience_profiles', 'INSERT'),
      ('public.audience_profiles', 'UPDATE'),
      ('public.minds', 'SELECT'), ('public.minds', 'INSERT'), ('public.minds', 'UPDATE'),
      ('public.content_minds', 'SELECT'), ('public.content_minds', 'INSERT'),
      ('public.content_minds', 'UPDATE'), ('public.content_minds', 'DELETE'),
      ('public.content_tags', 'SELECT'), ('public.content_tags', 'INSERT'),
      ('public.content_tags', 'UPDATE'), ('public.content_tags', 'DELETE'),
      ('public.tags', 'SELECT'), ('public.tags', 'INSERT'),
      ('sequence public.tags_id_seq', 'USAGE'),
      ('syncd.courses', 'SELECT'), ('syncd.courses', 'INSERT'),
      ('syncd.courses', 'UPDATE'), ('syncd.courses', 'DELETE'),
      ('syncd.rows', 'SELECT'), ('syncd.rows', 'INSERT'),
      ('syncd.rows', 'UPDATE'), ('syncd.rows', 'DELETE'),
      ('syncd.reclaimed_slugs', 'SELECT'), ('syncd.reclaimed_slugs', 'INSERT'),
      ('syncd.schema_migrations', 'SELECT')
    ) as required (o, p)
  ) as checked
) as summary \gset
call pg_temp.expect(:s, 'holds every privilege syncd needs', :'ok', :'detail');

-- Every row of the tables it writes: through a policy of its own (no BYPASSRLS needed).
select coalesce(array_agg(t) = '{}' or array_agg(t) is null, true) as ok,
       'without a syncd_writer policy: ' || coalesce(array_to_string(array_agg(t), ', '), 'none')
         as detail
from unnest(array['content_projects', 'contents', 'audience_profiles', 'content_minds',
                  'content_tags', 'minds', 'tags']) as t
where not exists (
  select 1 from pg_catalog.pg_policies p
  where p.schemaname = 'public' and p.tablename = t and p.cmd = 'ALL'
    and 'syncd_writer' = any (p.roles) and p.qual = 'true'
) and not exists (
  select 1 from pg_catalog.pg_roles where rolname = 'syncd_writer' and (rolbypassrls or rolsuper)
) \gset
call pg_temp.expect(:s, 'reaches every row of the tables it writes', :'ok', :'detail');

call pg_temp.check(:s, 'sees every creator''s projects', 'syncd_writer', null,
  format('select from public.content_projects where id in (%L, %L, %L)', :'project_a',
         :'project_a2', :'project_b'), '3');
call pg_temp.check(:s, 'sees every creator''s contents', 'syncd_writer', null,
  'select from public.contents where slug like ''rls-check-%''', '7');
call pg_temp.check(:s, 'creates minds', 'syncd_writer', null,
  'insert into public.minds (slug, display_name) values (''rls-check-new'', ''x'')'
  ' on conflict (slug) do nothing', '1');
call pg_temp.check(:s, 'upserts audience profiles', 'syncd_writer', null,
  'insert into public.audience_profiles (slug, name) values (''rls-check-aud-o'', ''y'')'
  ' on conflict (slug) do update set name = excluded.name', '1');
call pg_temp.check(:s, 'upserts projects', 'syncd_writer', null,
  format('insert into public.content_projects (slug, name, creator_mind_id)'
         ' values (''rls-check-a'', ''A!'', %L)'
         ' on conflict (slug) do update set name = excluded.name returning id, (xmax = 0)',
         :'mind_ana'),
  '1');
call pg_temp.check(:s, 'archives a project', 'syncd_writer', null,
  format('update public.content_projects set status = ''archived'' where id = %L',
         :'project_b'), '1');
call pg_temp.check(:s, 'inserts contents into any project', 'syncd_writer', null,
  format('insert into public.contents (content_type, slug, title, project_id)'
         ' values (''course_lesson'', ''rls-check-writer'', ''x'', %L)', :'project_b'),
  '1');
call pg_temp.check(:s, 'soft-deletes contents', 'syncd_writer', null,
  format('update public.contents set deleted_at = now() where id in %s and deleted_at is null',
         :'a_contents'),
  '3');
call pg_temp.check(:s, 'creates tags', 'syncd_writer', null,
  'insert into public.tags (name, tag_type) values (''rls-check-new'', ''theme'')'
  ' on conflict (name) do nothing', '1');
call pg_temp.check(:s, 'prunes and writes links', 'syncd_writer', null,
  format('with gone as (delete from public.content_tags where content_id in %s returning 1)'
         ' insert into public.content_minds (content_id, mind_id, role) values (%L, %L, ''host'')'
         ' on conflict (content_id, mind_id) do update set role = excluded.role',
         :'a_contents', :'a_outline', :'mind_pia'),
  '1');
call pg_temp.check(:s, 'writes its bookkeeping', 'syncd_writer', null,
  format('with c as (insert into syncd.courses (course, project_id) values'
         ' (''rls-check-course'', %L) returning project_id),'
         ' r as (insert into syncd.rows (content_id, project_id, row_key, row_hash)'
         ' values (%L, %L, ''outline'', ''\x00'') returning 1)'
         ' update syncd.courses set synced_at = now() where course = ''rls-check-course''',
         :'project_a', :'a_outline', :'project_a'),
  'ok');
call pg_temp.check(:s, 'deletes its bookkeeping', 'syncd_writer', null,
  format('with r as (delete from syncd.rows where project_id = %L returning 1)'
         ' delete from syncd.courses where project_id = %L', :'project_a', :'project_a'),
  'ok');
call pg_temp.check(:s, 'reads the migration ledger', 'syncd_writer', null,
  'select from syncd.schema_migrations', 'ok');
call pg_temp.check(:s, 'cannot delete contents (syncd only soft-deletes)', 'syncd_writer',
  null, format('delete from public.contents where id = %L', :'a_draft'), 'denied');
call pg_temp.check(:s, 'cannot delete projects', 'syncd_writer', null,
  format('delete from public.content_projects where id = %L', :'project_b'), 'denied');
call pg_temp.check(:s, 'cannot delete minds', 'syncd_writer', null,
  format('delete from public.minds where id = %L', :'mind_ze'), 'denied');
call pg_temp.check(:s, 'cannot write the migration ledger', 'syncd_writer', null,
  'delete from syncd.schema_migrations', 'denied');
call pg_temp.check(:s, 'cannot truncate', 'syncd_writer', null,
  'truncate public.content_tags', 'denied');
call pg_temp.check(:s, 'cannot read auth.users', 'syncd_writer', null,
  'select from auth.users', 'denied');

-- 9. syncd's slug namespace -------------------------------------------------------------------
-- A slug holding "--" names a file of a synced course (<course>--<file>): syncd's writer and
-- the owner write it, nobody else. A course's legacy slugs (<course>-outline,
-- <course>-modulo-<n>, <course>-licao-<m>-<n>) are its project's once it exists.

\set s '''syncd''''s slug namespace is its own'''
call pg_temp.check(:s, 'B cannot take the slug of A''s next lesson', 'authenticated',
  :'user_bia',
  format('insert into public.contents (content_type, slug, title, project_id)'
         ' values (''course_lesson'', ''rls-check-a--9-1-squat-0123abcd'', ''x'', %L)',
         :'project_b'),
  'slug');
call pg_temp.check(:s, 'B cannot change a slug into A''s namespace', 'authenticated',
  :'user_bia',
  format('update public.contents set slug = ''rls-check-a--9-1-squat-0123abcd'' where id = %L',
         :'b_outline'),
  'slug');
call pg_temp.check(:s, 'B cannot take a file slug of a course that does not exist yet',
  'authenticated', :'user_bia',
  format('insert into public.contents (content_type, slug, title, project_id)'
         ' values (''course_lesson'', ''rls-check-later--1-1-x-0123abcd'', ''x'', %L)',
         :'project_b'),
  'slug');
call pg_temp.check(:s, 'B cannot take a legacy slug of A''s course', 'authenticated',
  :'user_bia',
  format('insert into public.contents (content_type, slug, title, project_id)'
         ' values (''course_lesson'', ''rls-check-a-modulo-9'', ''x'', %L)', :'project_b'),
  'slug');
call pg_temp.check(:s, 'B writes the legacy slugs of its own course', 'authenticated',
  :'user_bia',
  format('insert into public.contents (content_type, slug, title, project_id)'
         ' values (''course_module'', ''rls-check-b-modulo-9'', ''x'', %L)', :'project_b'),
  '1');
call pg_temp.check(:s, 'A writes no "--" slug either, even in its own project',
  'authenticated', :'user_ana',
  format('insert into public.contents (content_type, slug, title, project_id)'
         ' values (''course_lesson'', ''rls-check-a--extra'', ''x'', %L)', :'project_a'),
  'slug');
call pg_temp.check(:s, 'nor does service_role', 'service_role', null,
  format('insert into public.contents (content_type, slug, title, project_id)'
         ' values (''course_lesson'', ''rls-check-a--svc'', ''x'', %L)', :'project_a'),
  'slug');
call pg_temp.check(:s, 'syncd_writer does', 'syncd_writer', null,
  format('insert into public.contents (content_type, slug, title, project_id)'
         ' values (''course_lesson'', ''rls-check-a--9-1-x-0123abcd'', ''x'', %L)',
         :'project_a'),
  '1');

-- 10. A creator's lesson listing uses the policy indexes --------------------------------------
-- Enough rows that the planner's choice means something: 250 more creators with 8 projects
-- of 8 lessons each (some published, some of those soft-deleted), then ANALYZE.

\set s '''lesson listing uses the policy indexes'''
insert into public.minds (slug, display_name)
select 'rls-check-bulk-' || g, 'Bulk ' || g from generate_series(1, 250) as g;
insert into public.content_projects (slug, name, project_type, creator_mind_id)
select 'rls-check-bulk-' || g, 'Bulk ' || g, 'course', m.id
from generate_series(1, 2000) as g
join public.minds m on m.slug = 'rls-check-bulk-' || (g % 250 + 1);
insert into public.contents
  (content_type, slug, title, content, project_id, sequence_order, status, deleted_at)
select 'course_lesson', p.slug || '-' || g, 'Lesson ' || g, repeat('lorem ipsum ', 60), p.id, g,
       case when g <= 2 then 'published' else 'draft' end,
       case when g = 2 then now() end
from public.content_projects p cross join generate_series(1, 8) as g
where p.slug like 'rls-check-bulk-%';
analyze public.contents;
analyze public.content_projects;

-- Acceptable for the owner policy: any plain btree index of contents that leads with
-- project_id (upstream's, or the one 000500 adds when upstream's is partial). For the
-- published policy: one on status, or one whose predicate is the policy's (the planner
-- picks either, depending on the data).
select
  coalesce(string_agg(ic.relname, '|') filter (where a.attname = 'project_id'
    and i.indpred is null), '(none)') as project_indexes,
  coalesce(string_agg(ic.relname, '|') filter (where (a.attname = 'status' and i.indpred is null)
    or pg_catalog.pg_get_expr(i.indpred, i.indrelid) like '%''published''%'), '(none)')
    as published_indexes
from pg_catalog.pg_index i
join pg_catalog.pg_class ic on ic.oid = i.indexrelid
join pg_catalog.pg_am am on am.oid = ic.relam
join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
where i.indrelid = 'public.contents'::regclass and am.amname = 'btree' and i.indisvalid
\gset

select pg_temp.plan_as('authenticated', :'user_ana',
  'select id, title from public.contents where content_type = ''course_lesson'''
  ' and deleted_at is null order by sequence_order') as lesson_plan \gset
select pg_temp.plan_as('authenticated', :'user_ana',
  'select id, name from public.content_projects') as project_plan \gset

call pg_temp.expect(:s,
  'contents: an index scan on the project_id index (' || :'project_indexes' || ')',
  :'lesson_plan' ~ ('Index Scan on (' || :'project_indexes' || ')\M'), :'lesson_plan');
call pg_temp.expect(:s,
  'contents: an index scan for published rows (' || :'published_indexes' || ')',
  :'lesson_plan' ~ ('Index Scan on (' || :'published_indexes' || ')\M'), :'lesson_plan');
call pg_temp.expect(:s, 'contents: no sequential scan',
  :'lesson_plan' !~ 'Seq Scan on contents', :'lesson_plan');
call pg_temp.expect(:s, 'contents: the owner''s projects are looked up once (InitPlan)',
  :'lesson_plan' ~ 'InitPlan' and :'lesson_plan' !~ 'Filter:[^\n]*owned_project_ids',
  :'lesson_plan');
call pg_temp.expect(:s, 'projects: index scans on the creator and persona indexes',
  :'project_plan' ~ 'Index Scan on idx_content_projects_creator_mind\M'
    and :'project_plan' ~ 'Index Scan on idx_content_projects_persona_mind\M',
  :'project_plan');

-- Report ----------------------------------------------------------------------------------

\pset format unaligned
\pset tuples_only on
select case when bool_and(ok) then 'PASS ' || scenario
            else 'FAIL ' || scenario || ': ' || string_agg(
              case when not ok then what || ' [' || coalesce(detail, '') || ']' end, '; '
              order by n) end
from pg_temp.rls_check_results
group by scenario
order by min(n);
select format('%s of %s scenarios passed', count(*) filter (where ok), count(*))
from (select scenario, bool_and(ok) as ok from pg_temp.rls_check_results group by scenario) s;

rollback;
