-- Rollback of 20251201000600_syncd_writer_role.sql: revokes everything the migration granted
-- to syncd_writer in this database, then drops the role if the migration created it (its
-- comment says so) and nothing else depends on it. Roles are cluster-wide: while another
-- database of the server still grants it privileges, the role is kept.
-- NEVER RUN AGAINST PRODUCTION while syncd is running: its connections lose every privilege.

do $$
begin
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'syncd_writer') then
    return;
  end if;

  revoke select on syncd.schema_migrations from syncd_writer;
  revoke select, insert, update, delete on syncd.courses, syncd.rows from syncd_writer;
  revoke usage on sequence public.tags_id_seq from syncd_writer;
  revoke select, insert on public.tags from syncd_writer;
  revoke select, insert, update, delete on public.content_minds, public.content_tags
    from syncd_writer;
  revoke select, insert, update
    on public.content_projects, public.contents, public.audience_profiles, public.minds
    from syncd_writer;
  revoke usage on schema public, syncd from syncd_writer;

  if coalesce(shobj_description(
       (select oid from pg_catalog.pg_roles where rolname = 'syncd_writer'), 'pg_authid'
     ), '') not like '%created by migration 20251201000600_syncd_writer_role%' then
    return;  -- made by hand: not ours to drop
  end if;
  begin
    drop role syncd_writer;
  exception when dependent_objects_still_exist then
    raise notice 'syncd_writer rollback: role is still in use elsewhere, kept';
  end;
end
$$;

-- Keep the ledger true when this file is run by hand (psql): the migration is no
-- longer applied. (`syncd migrate --rollback` deletes the same row.)
delete from syncd.schema_migrations where version = '20251201000600';
