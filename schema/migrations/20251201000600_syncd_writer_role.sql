-- provides: role:syncd_writer
-- syncd_writer: the least-privilege role syncd connects as (instead of postgres or
-- service_role). It holds exactly what the writer's statements (syncd/sql/course.sql) and the
-- migration status check need; syncd/privileges.py lists the same set and checks it.
--
-- Created NOLOGIN, without a password: a deployment turns it into a login role once, out of
-- band, and puts the credentials in syncd's DATABASE_URL:
--
--   ALTER ROLE syncd_writer LOGIN PASSWORD '<a long random secret>';
--
-- (On Supabase, connect through the pooler as syncd_writer.<project-ref>.) Applying the
-- migrations stays a job for the owner of the schema (`syncd migrate` as postgres):
-- syncd_writer cannot create or alter anything.
--
-- No BYPASSRLS: on PostgreSQL 15, which most Supabase projects run, only a superuser may
-- create a role with it, and no Supabase user is a superuser. syncd writes every creator's
-- rows instead through policies of its own, one per table, "to syncd_writer" (migration
-- 20251201000800_supabase_hardening.sql); the writer inserts with INSERT ... SELECT, never
-- COPY, which RLS would refuse. `syncd migrate` run as Supabase's `postgres` (CREATEROLE)
-- can therefore create the role. A syncd_writer made by an earlier version with BYPASSRLS
-- keeps it (removing it needs a superuser on 15); it is harmless.
--
-- Roles are cluster-wide: one that already exists (made by hand, or by another database's
-- migration) is kept with its attributes and only gets the grants below.

do $$
begin
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'syncd_writer') then
    return;
  end if;
  begin
    create role syncd_writer nologin;
  exception
    when duplicate_object then
      return;  -- created concurrently by another database's migration
    when insufficient_privilege then
      raise exception 'cannot create role syncd_writer as %', current_user
        using hint = 'Apply the migrations as a role with CREATEROLE (on Supabase: postgres).';
  end;
  -- Marks the role as this migration's, so that its rollback drops only a role it created.
  comment on role syncd_writer is
    'syncd least-privilege writer (created by migration 20251201000600_syncd_writer_role)';
end
$$;

grant usage on schema public, syncd to syncd_writer;

-- Projects, contents, audience profiles and minds: written, never deleted (syncd soft-deletes
-- contents by setting deleted_at and archives projects by status).
grant select, insert, update
  on public.content_projects, public.contents, public.audience_profiles, public.minds
  to syncd_writer;

-- Link tables: syncd prunes the links a file no longer declares.
grant select, insert, update, delete on public.content_minds, public.content_tags
  to syncd_writer;

-- Tags: created when a file names a new one (bigserial id, hence the sequence).
grant select, insert on public.tags to syncd_writer;
grant usage on sequence public.tags_id_seq to syncd_writer;

-- Bookkeeping: fingerprints and row hashes; the ledger is only read (pending migrations stop
-- syncd before it writes).
grant select, insert, update, delete on syncd.courses, syncd.rows to syncd_writer;
grant select on syncd.schema_migrations to syncd_writer;
