-- Rollback of 20251201000200_mind_attribution.sql.
-- NEVER RUN AGAINST PRODUCTION: on a brownfield database this drops upstream's view and
-- the creator/persona attribution of every project.

drop view if exists public.v_contents_with_creators;
alter table public.content_tags drop column if exists created_at;
alter table public.content_minds drop column if exists created_at;
drop index if exists public.idx_content_projects_persona_mind;
drop index if exists public.idx_content_projects_creator_mind;
alter table public.content_projects drop column if exists persona_mind_id;
alter table public.content_projects drop column if exists creator_mind_id;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201000200';
