-- The roles of a Supabase project (cluster-wide), run once as the bootstrap superuser
-- supabase_admin. Facts from issue 8 and Supabase's "Database roles" docs:
-- * postgres is what users connect as: not a superuser, but CREATEROLE, CREATEDB, BYPASSRLS;
--   it owns the database and is a member of anon, authenticated and service_role.
-- * anon and authenticated are NOLOGIN; service_role is NOLOGIN and BYPASSRLS.
-- * authenticator (PostgREST) is LOGIN NOINHERIT and switches into the three per request.
create role postgres login nosuperuser createrole createdb bypassrls;
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
create role authenticator login noinherit;
create role supabase_auth_admin login noinherit createrole;
grant anon, authenticated, service_role to authenticator;
grant anon, authenticated, service_role to postgres;
