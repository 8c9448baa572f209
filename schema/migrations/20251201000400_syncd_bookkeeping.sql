-- provides: syncd.courses, syncd.rows
-- syncd's own bookkeeping, in its own schema (the runner already created it for its ledger,
-- syncd.schema_migrations). Nothing here is visible to API clients.

create schema if not exists syncd;

create table if not exists syncd.courses (
  course text primary key,              -- folder name under the root
  project_id uuid not null references public.content_projects (id) on delete cascade,
  fingerprint bytea,                    -- hash over (path, file hash) of the whole folder; equal => nothing to do
  status_before_archive text,           -- project status to restore when an archived folder returns
  synced_at timestamptz not null default now()
);

create table if not exists syncd.rows (
  content_id uuid primary key references public.contents (id) on delete cascade,
  project_id uuid not null references public.content_projects (id) on delete cascade,
  row_key text not null,                -- 'outline', 'module:3', 'file:<path relative to root>'
  row_hash bytea not null,              -- hash of every column value syncd wrote; equal => no write
  source_hash bytea,                    -- sha256 of the raw bytes of the source file (verify)
  synced_at timestamptz not null default now(),
  unique (project_id, row_key)
);

revoke all on schema syncd from public, anon, authenticated;
