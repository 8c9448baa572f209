-- !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
-- DANGER: NEVER RUN THIS AGAINST PRODUCTION.
-- On a brownfield database (one where CreatorOS existed before syncd) this DESTROYS ALL
-- CreatorOS DATA: minds, user profiles, tags, projects, contents and their links. It exists
-- for development and test databases that syncd's own migrations built from nothing.
-- !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
--
-- Rollback of 20251201000100_creatoros_base.sql. No CASCADE: if anything else was built on
-- these tables, the rollback fails and changes nothing.

drop table if exists public.content_tags;
drop table if exists public.content_minds;
drop table if exists public.contents;
drop table if exists public.content_projects;
drop table if exists public.audience_profiles;
drop table if exists public.job_executions;
drop table if exists public.tags;
drop table if exists public.user_profiles;
drop table if exists public.minds;
drop function if exists public.set_updated_at();
drop function if exists public.current_mind_id();

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201000100';
