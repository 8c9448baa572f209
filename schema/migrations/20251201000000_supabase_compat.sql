-- provides: auth.users, auth.uid(), role:anon, role:authenticated, role:service_role
-- Supabase compatibility for plain PostgreSQL (embedded server, tests).
--
-- Supabase ships the roles anon, authenticated and service_role, the schema auth with
-- auth.users, and auth.uid(). The CreatorOS tables and policies refer to them, so a plain
-- PostgreSQL needs stand-ins. Everything here happens only where it is missing, so on a
-- real Supabase this migration changes nothing: no object is replaced and no privilege is
-- granted there (detected by the Supabase-only column auth.users.instance_id).
--
-- Roles are cluster-wide: a role that another database of the same server already created
-- is reused as it is.

do $$
begin
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'anon') then
    create role anon nologin;
  end if;
exception when duplicate_object then
  null;  -- created concurrently by another database's migration
end
$$;

do $$
begin
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'authenticated') then
    create role authenticated nologin;
  end if;
exception when duplicate_object then
  null;
end
$$;

do $$
begin
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    create role service_role nologin bypassrls;
  end if;
exception when duplicate_object then
  null;
end
$$;

-- Guarded by catalog lookups, not IF NOT EXISTS: CREATE ... IF NOT EXISTS checks the
-- privilege to create in the schema first, and on Supabase auth belongs to
-- supabase_auth_admin, where postgres may not create anything.
do $$
begin
  if not exists (select 1 from pg_catalog.pg_namespace where nspname = 'auth') then
    create schema auth;
  end if;
  if to_regclass('auth.users') is null then
    create table auth.users (
      id uuid primary key,
      email text,
      created_at timestamptz default now()
    );
  end if;
end
$$;

-- auth.uid(): the JWT "sub" claim, as on Supabase. The inner nullif keeps it from failing
-- when the setting exists but is empty (it stays '' in a session after a transaction-local
-- set_config has ended).
do $$
begin
  if not exists (
    select 1
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'auth' and p.proname = 'uid'
  ) then
    create function auth.uid() returns uuid
      language sql stable
      as $fn$
        select nullif(
          nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub', ''
        )::uuid
      $fn$;
  end if;
end
$$;

do $$
begin
  if exists (
    select 1 from information_schema.columns
    where table_schema = 'auth' and table_name = 'users' and column_name = 'instance_id'
  ) then
    return;  -- a real Supabase: its grants are its own business
  end if;
  grant usage on schema auth to anon, authenticated, service_role;
  grant execute on function auth.uid() to anon, authenticated, service_role;
end
$$;
