-- The start-up check of what the writer's role may do (syncd/privileges.py): catalog reads
-- only. Objects are looked up in the catalogs by name, not with to_regclass() or a ::regclass
-- cast: those refuse a schema the current user has no USAGE on, and that is one of the
-- things to report, not a reason to fail.

-- name: held
-- One row per (object, privilege), in the order of REQUIRED; held is NULL when the object
-- does not exist.
select w.obj, w.privilege, case w.kind
  when 'schema' then (
    select pg_catalog.has_schema_privilege(n.oid, w.privilege)
    from pg_catalog.pg_namespace n where n.nspname = w.name)
  when 'sequence' then (
    select pg_catalog.has_sequence_privilege(c.oid, w.privilege)
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = w.schema and c.relname = w.name and c.relkind = 'S')
  else (
    select pg_catalog.has_table_privilege(c.oid, w.privilege)
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = w.schema and c.relname = w.name
      and c.relkind = any('{r,p,v,m,f}'::"char"[]))
  end as held
from unnest(%(objects)s::text[], %(kinds)s::text[], %(schemas)s::text[], %(names)s::text[],
            %(privileges)s::text[])
  with ordinality as w(obj, kind, schema, name, privilege, ord)
order by w.ord;

-- name: row_access_missing
-- The written tables the current user reaches only partly, in the order of WRITTEN_TABLES
-- (none for a role that bypasses RLS). Such a table (t.schema, t.relation) has RLS on and
-- the current user is not its owner (owners bypass RLS unless it is forced), and either no
-- permissive "for all" policy with USING and WITH CHECK both true applies to the current
-- user (directly, through a role it is a member of, or to PUBLIC), or a restrictive policy
-- that is not simply true applies to it. "Applies" is written out twice below, for the
-- policy p and for the policy x: the role 0 (PUBLIC) or a role the current user has.
select t.schema || '.' || t.relation as "table"
from unnest(%(schemas)s::text[], %(relations)s::text[]) with ordinality as t(schema, relation, ord)
where not coalesce((select rolbypassrls or rolsuper from pg_catalog.pg_roles
                    where rolname = current_user), false)
  and exists (
    select c.oid from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = t.schema and c.relname = t.relation and c.relrowsecurity
      and (c.relforcerowsecurity or not pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE'))
      and (
        not exists (
          select 1 from pg_catalog.pg_policy p
          where p.polrelid = c.oid and p.polpermissive and p.polcmd = '*'
            and (0::oid = any (p.polroles) or exists (
              select 1 from unnest(p.polroles) as r(oid)
              where pg_catalog.pg_has_role(current_user, r.oid, 'USAGE')))
            and pg_catalog.pg_get_expr(p.polqual, p.polrelid) = 'true'
            and coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), 'true') = 'true'
        )
        or exists (
          select 1 from pg_catalog.pg_policy x
          where x.polrelid = c.oid and not x.polpermissive
            and (0::oid = any (x.polroles) or exists (
              select 1 from unnest(x.polroles) as r(oid)
              where pg_catalog.pg_has_role(current_user, r.oid, 'USAGE')))
            and (coalesce(pg_catalog.pg_get_expr(x.polqual, x.polrelid), 'true') <> 'true'
                 or coalesce(pg_catalog.pg_get_expr(x.polwithcheck, x.polrelid), 'true') <> 'true')
        )
      )
  )
order by t.ord;
