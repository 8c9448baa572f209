-- Rollback of 20251201000000_supabase_compat.sql.
--
-- Does nothing at all on a real Supabase (auth.users has the Supabase-only column
-- instance_id, or Supabase's auth admin role exists). On plain PostgreSQL it drops what the
-- migration could have created: auth.uid(), auth.users, the schema auth (only when empty)
-- and the roles anon, authenticated, service_role. A role is dropped only when nothing in
-- any database of the server still depends on it (owned objects, privileges, memberships);
-- otherwise it is left in place.

do $$
declare
  r text;
begin
  if exists (
    select 1 from information_schema.columns
    where table_schema = 'auth' and table_name = 'users' and column_name = 'instance_id'
  ) or exists (select 1 from pg_catalog.pg_roles where rolname = 'supabase_auth_admin') then
    raise notice 'supabase_compat rollback: Supabase detected, nothing to undo';
    return;
  end if;

  drop function if exists auth.uid();
  drop table if exists auth.users;
  if exists (select 1 from pg_catalog.pg_namespace where nspname = 'auth') then
    if not exists (
      select 1 from pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace where n.nspname = 'auth'
      union all
      select 1 from pg_catalog.pg_proc p
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace where n.nspname = 'auth'
      union all
      select 1 from pg_catalog.pg_type t
      join pg_catalog.pg_namespace n on n.oid = t.typnamespace where n.nspname = 'auth'
    ) then
      drop schema auth;
    end if;
  end if;

  foreach r in array array['service_role', 'authenticated', 'anon'] loop
    continue when not exists (select 1 from pg_catalog.pg_roles where rolname = r);
    -- Members or memberships mean someone else built on the role: leave it.
    continue when exists (
      select 1 from pg_catalog.pg_auth_members m
      join pg_catalog.pg_roles x on x.oid = m.roleid or x.oid = m.member
      where x.rolname = r
    );
    begin
      if exists (select 1 from pg_catalog.pg_namespace where nspname = 'auth') then
        execute format('revoke usage on schema auth from %I', r);
      end if;
      execute format('drop role if exists %I', r);
    exception when dependent_objects_still_exist then
      raise notice 'supabase_compat rollback: role % is still in use, kept', r;
    end;
  end loop;
end
$$;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201000000';
