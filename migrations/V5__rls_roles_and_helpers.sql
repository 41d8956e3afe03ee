-- PostgreSQL row-level security as a second layer: data queries run as the
-- database role of the caller (SET LOCAL ROLE, see server/src/db/rls.rs) with
-- the JWT claims in `request.jwt.claims`, so RLS policies written for
-- Supabase (auth.uid(), auth.role(), auth.jwt()) keep working.
--
-- Roles belong to the whole cluster: several databases may migrate at once,
-- so creating one that already exists is not an error, and membership is
-- granted only where it is needed.
DO $$
BEGIN
    BEGIN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    -- A superuser may take any role already; granting membership is needed
    -- (and safe: one database per login user) only for other users.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT anon, authenticated TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA auth TO anon, authenticated;

-- The claims of the request's JWT (empty outside a request).
CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$ SELECT coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb $$;

-- The signed-in user's id, or NULL.
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(auth.jwt() ->> 'sub', '')::uuid $$;

-- The token's role: anon, authenticated, ...
CREATE OR REPLACE FUNCTION auth.role() RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT auth.jwt() ->> 'role' $$;

GRANT EXECUTE ON FUNCTION auth.jwt(), auth.uid(), auth.role() TO anon, authenticated;
