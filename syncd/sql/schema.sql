-- Reads of the start-up schema check (syncd/migrate.py). Catalog reads only: any role may
-- run them.

-- name: missing_objects
-- Which of the named objects do not exist. A name is schema.relation (a table or view),
-- schema.relation.column, schema.function() (any arguments), role:name, or
-- rls:schema.table (row-level security enabled on it).
select name
from unnest(%(names)s::text[]) as name
where not case
  when name like 'role:%%' then exists (
    select 1 from pg_catalog.pg_roles where rolname = substr(name, 6))
  when name like 'rls:%%' then exists (
    select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = split_part(substr(name, 5), '.', 1)
      and c.relname = split_part(substr(name, 5), '.', 2) and c.relrowsecurity)
  when name like '%%()' then exists (
    select 1 from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where n.nspname = split_part(name, '.', 1) and p.proname = split_part(left(name, -2), '.', 2))
  when name like '%%.%%.%%' then exists (
    select 1
    from pg_catalog.pg_attribute a
    join pg_catalog.pg_class c on c.oid = a.attrelid
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = split_part(name, '.', 1) and c.relname = split_part(name, '.', 2)
      and a.attname = split_part(name, '.', 3) and a.attnum > 0 and not a.attisdropped)
  else exists (
    select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = split_part(name, '.', 1) and c.relname = split_part(name, '.', 2))
end
order by name;

-- name: ledger
select version, name, applied_at from syncd.schema_migrations order by version;
