-- Rollback of 20251201000300_rls_upstream.sql.
-- NEVER RUN AGAINST PRODUCTION: on Supabase this removes upstream's policies, turns RLS off
-- (every authenticated user could then read and write every CreatorOS row it can reach)
-- and revokes the privileges that Supabase's default privileges had granted.

revoke usage, select on sequence public.tags_id_seq from service_role;
revoke insert, update on public.tags from service_role;
revoke select on public.minds, public.tags from authenticated, service_role;
revoke select on public.v_contents_with_creators from authenticated, service_role;
revoke select, insert, update, delete
  on public.audience_profiles, public.content_projects, public.contents,
     public.content_minds, public.content_tags
  from authenticated, service_role;

drop policy if exists content_tags_via_content on public.content_tags;
drop policy if exists content_minds_via_content on public.content_minds;
drop policy if exists audience_profiles_write_all on public.audience_profiles;
drop policy if exists audience_profiles_read_all on public.audience_profiles;
drop policy if exists contents_read_published on public.contents;
drop policy if exists contents_rw_by_project on public.contents;
drop policy if exists content_projects_read_as_persona on public.content_projects;
drop policy if exists content_projects_rw_mine on public.content_projects;

alter table public.content_tags disable row level security;
alter table public.content_minds disable row level security;
alter table public.audience_profiles disable row level security;
alter table public.contents disable row level security;
alter table public.content_projects disable row level security;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201000300';
