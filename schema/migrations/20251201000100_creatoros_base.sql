-- provides: public.minds, public.user_profiles, public.content_projects, public.contents, public.audience_profiles, public.content_minds, public.content_tags, public.current_mind_id()
-- CreatorOS base tables (shape of the upstream CreatorOS schema, see
-- shared/reference/creatoros-schema.md) and the shared tables they point at.
--
-- Brownfield-safe: production already has all of this. Every statement creates only what
-- is missing (tables, indexes, triggers) or replaces a function with the same behaviour, so
-- applying this file to a database that has these tables changes nothing in them. Index and
-- trigger names are upstream's, so an existing upstream index or trigger is kept as it is.
-- Constraints live inside the table definitions only.

-- Shared tables -----------------------------------------------------------------------------

create table if not exists public.minds (
  id uuid primary key default gen_random_uuid(),
  slug text not null unique,
  display_name text not null,
  primary_language char(2),
  short_bio text,
  privacy_level text not null default 'public' check (privacy_level in ('public', 'private')),
  apex_score numeric(3, 2),
  created_by text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table if not exists public.user_profiles (
  id uuid primary key references auth.users (id) on delete cascade,
  mind_id uuid not null unique references public.minds (id) on delete restrict,
  created_at timestamptz not null default now()
);

create table if not exists public.tags (
  id bigserial primary key,
  name text not null unique,
  tag_type text not null check (tag_type in ('domain', 'theme')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table if not exists public.job_executions (
  id uuid primary key default gen_random_uuid(),
  created_at timestamptz not null default now()
);

-- Ownership in CreatorOS is by mind: the mind of the signed-in auth user. Security definer
-- so that policies can call it without the caller needing access to user_profiles.
create or replace function public.current_mind_id() returns uuid
  language sql
  stable
  security definer
  set search_path = ''
  as $$
    select mind_id from public.user_profiles where id = auth.uid()
  $$;

-- CreatorOS tables --------------------------------------------------------------------------

create table if not exists public.audience_profiles (
  id uuid primary key default gen_random_uuid(),
  slug text not null unique,
  name text not null,
  description text,
  demographics jsonb,
  psychographics jsonb,
  technical_level text
    check (technical_level in ('beginner', 'intermediate', 'advanced', 'expert')),
  learning_preferences jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table if not exists public.content_projects (
  id uuid primary key default gen_random_uuid(),
  slug text not null unique,
  name text not null,
  description text,
  project_type text check (project_type in (
    'course', 'book', 'blog_series', 'video_series',
    'newsletter', 'social_media_campaign', 'other'
  )),
  status text default 'planning' check (status in (
    'planning', 'in_progress', 'completed', 'archived'
  )),
  target_audience_id uuid references public.audience_profiles (id),
  default_frameworks jsonb,
  project_metadata jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table if not exists public.contents (
  id uuid primary key default gen_random_uuid(),
  ai_generated boolean not null default false,
  content_type text not null check (content_type in (
    'raw_source', 'interview', 'podcast_transcript', 'video_transcript',
    'article', 'book_excerpt', 'essay', 'speech', 'social_media_post',
    'email', 'conversation', 'academic_paper',
    'course_outline', 'course_module', 'course_lesson',
    'book_outline', 'book_part', 'book_chapter',
    'blog_series', 'blog_post',
    'video_script', 'video_chapter',
    'social_post_linkedin', 'social_post_twitter',
    'social_thread', 'newsletter_edition',
    'other'
  )),
  parent_content_id uuid references public.contents (id) on delete cascade,
  sequence_order smallint,
  slug text not null unique,  -- unique across the whole table, not per project
  title text not null,
  content text,
  generation_execution_id uuid references public.job_executions (id),
  project_id uuid references public.content_projects (id) on delete set null,
  fidelity_score numeric(3, 2) check (fidelity_score between 0 and 1),
  metadata jsonb not null default '{}'::jsonb,
  status text default 'draft' check (status in ('draft', 'reviewed', 'published', 'archived')),
  published_at timestamptz,
  published_url text,
  file_path text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  deleted_at timestamptz
);

create table if not exists public.content_minds (
  content_id uuid not null references public.contents (id) on delete cascade,
  mind_id uuid not null references public.minds (id) on delete cascade,
  role text check (role in (
    'creator', 'author', 'co_author', 'host', 'guest', 'interviewer',
    'interviewee', 'participant', 'moderator', 'contributor', 'other'
  )),
  primary key (content_id, mind_id)
);

create table if not exists public.content_tags (
  content_id uuid not null references public.contents (id) on delete cascade,
  tag_id bigint not null references public.tags (id) on delete cascade,
  primary key (content_id, tag_id)
);

-- Indexes (upstream names) --------------------------------------------------------------------

create index if not exists idx_contents_parent
  on public.contents (parent_content_id, sequence_order)
  where deleted_at is null;
create index if not exists idx_contents_project on public.contents (project_id);
create index if not exists idx_contents_status on public.contents (status);
create index if not exists idx_contents_metadata on public.contents using gin (metadata);
create index if not exists idx_contents_fts
  on public.contents
  using gin (to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(content, '')));
-- Foreign keys whose parent rows get deleted (cascades must not scan the whole table).
create index if not exists idx_content_minds_mind on public.content_minds (mind_id);
create index if not exists idx_content_tags_tag on public.content_tags (tag_id);

-- updated_at --------------------------------------------------------------------------------

create or replace function public.set_updated_at() returns trigger
  language plpgsql
  set search_path = ''
  as $$
  begin
    new.updated_at = now();
    return new;
  end;
  $$;

-- One BEFORE UPDATE trigger per table with an updated_at column, created only when the table
-- has no trigger yet whose name mentions updated_at (upstream's are trg_<table>_updated_at).
do $$
declare
  t text;
begin
  foreach t in array array[
    'minds', 'tags', 'audience_profiles', 'content_projects', 'contents'
  ] loop
    continue when not exists (
      select 1 from information_schema.columns
      where table_schema = 'public' and table_name = t and column_name = 'updated_at'
    );
    continue when exists (
      select 1 from pg_catalog.pg_trigger g
      where g.tgrelid = format('public.%I', t)::regclass
        and not g.tgisinternal
        and g.tgname like '%updated_at%'
    );
    execute format(
      'create trigger %I before update on public.%I '
      'for each row execute function public.set_updated_at()',
      'trg_' || t || '_updated_at', t
    );
  end loop;
end
$$;
