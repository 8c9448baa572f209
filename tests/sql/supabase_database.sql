-- One Supabase project database, run as supabase_admin inside a database owned by
-- postgres (created with OWNER postgres).

-- auth: owned by supabase_auth_admin; auth.users has Supabase's instance_id column (which
-- syncd's compatibility migration reads as "this is a real Supabase").
create schema auth authorization supabase_auth_admin;
set role supabase_auth_admin;
create table auth.users (
  instance_id uuid,
  id uuid primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  created_at timestamptz default now()
);
create function auth.uid() returns uuid
  language sql stable
  as $$
    select coalesce(
      current_setting('request.jwt.claim.sub', true),
      current_setting('request.jwt.claims', true)::jsonb ->> 'sub'
    )::uuid
  $$;
create function auth.role() returns text
  language sql stable
  as $$
    select coalesce(
      current_setting('request.jwt.claim.role', true),
      current_setting('request.jwt.claims', true)::jsonb ->> 'role'
    )::text
  $$;
create function auth.jwt() returns jsonb
  language sql stable
  as $$
    select coalesce(
      nullif(current_setting('request.jwt.claim', true), ''),
      nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
  $$;
grant usage on schema auth to anon, authenticated, service_role, postgres;
grant all on auth.users to postgres, service_role;
reset role;

-- extensions: pgcrypto and uuid-ossp live here, not in public.
create schema extensions authorization postgres;
-- (pgserver's build ships no contrib modules: there the schema stays empty.)
do $$
begin
  if exists (select 1 from pg_available_extensions where name = 'pgcrypto') then
    create extension pgcrypto with schema extensions;
  end if;
  if exists (select 1 from pg_available_extensions where name = 'uuid-ossp') then
    create extension "uuid-ossp" with schema extensions;
  end if;
end
$$;
grant usage on schema extensions to anon, authenticated, service_role;

-- public: every table, function and sequence that postgres or supabase_admin creates is
-- fully granted to the API roles, unless a migration revokes it.
grant usage on schema public to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on functions to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on sequences to anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
  grant all on functions to anon, authenticated, service_role;
alter default privileges for role supabase_admin in schema public
  grant all on sequences to anon, authenticated, service_role;
