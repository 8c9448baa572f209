-- provides: public.content_projects.creator_mind_id, public.content_projects.persona_mind_id, public.v_contents_with_creators
-- Mind attribution (upstream's 20251028120000_creator_os_schema_changes, made idempotent):
-- who creates a project (creator_mind_id, the owner for RLS) and whose voice it emulates
-- (persona_mind_id); created_at on the link tables; the v_contents_with_creators view.
-- Brownfield-safe: only adds what is missing; index names are upstream's.

alter table public.content_projects
  add column if not exists creator_mind_id uuid references public.minds (id) on delete set null;
alter table public.content_projects
  add column if not exists persona_mind_id uuid references public.minds (id) on delete set null;

create index if not exists idx_content_projects_creator_mind
  on public.content_projects (creator_mind_id)
  where creator_mind_id is not null;
create index if not exists idx_content_projects_persona_mind
  on public.content_projects (persona_mind_id)
  where persona_mind_id is not null;

alter table public.content_minds
  add column if not exists created_at timestamptz not null default now();
alter table public.content_tags
  add column if not exists created_at timestamptz not null default now();

-- Column list and order are upstream's, so that CREATE OR REPLACE works on a database that
-- already has upstream's view (it cannot drop, rename or reorder columns). security_invoker:
-- whoever queries the view gets the RLS of the underlying tables applied as themselves.
create or replace view public.v_contents_with_creators
  with (security_invoker = true)
  as
  select
    c.id,
    c.slug,
    c.title,
    c.content_type,
    c.ai_generated,
    c.fidelity_score,
    c.status,
    c.project_id,
    p.name as project_name,
    p.creator_mind_id,
    p.persona_mind_id,
    cm.display_name as creator_name,
    pm.display_name as persona_name,
    c.created_at,
    c.published_at
  from public.contents c
  left join public.content_projects p on p.id = c.project_id
  left join public.minds cm on cm.id = p.creator_mind_id
  left join public.minds pm on pm.id = p.persona_mind_id
  where c.deleted_at is null;
