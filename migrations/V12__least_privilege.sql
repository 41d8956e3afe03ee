-- Least privilege for the data API (see docs/security.md).
--
-- Requests that run app SQL (data API reads and writes, RPC, batches) use a
-- second pool whose login role (`database.api_role`, default
-- `authenticator`) is NOINHERIT and a member of the API roles only: anon,
-- authenticated and service_role. Basalt creates that login role at start-up
-- (server/src/db/roles.rs), since its name and password come from the
-- configuration; this migration adds what does not depend on it.

-- service_role: what requests with the service_role key run as. It bypasses
-- RLS (as Basalt's policies do for that key), but is no superuser and has no
-- privilege on Basalt's own schemas.
DO $$
DECLARE
    superuser boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    BEGIN
        IF superuser THEN
            CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
        ELSE
            -- Only a superuser may grant BYPASSRLS.
            CREATE ROLE service_role NOLOGIN NOINHERIT;
            RAISE NOTICE 'not a superuser: service_role was created without BYPASSRLS';
        END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    IF NOT superuser THEN
        EXECUTE format('GRANT service_role TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA auth TO service_role;
GRANT EXECUTE ON FUNCTION auth.jwt(), auth.uid(), auth.role() TO service_role;

-- Inserts check each new row against the caller's policy before the row is
-- inserted (server/core/src/rest/write.rs, `checked_source`), so that a row
-- the policy refuses is refused before a unique index could tell that a
-- hidden row holds the same values.
CREATE FUNCTION auth.check_policy(ok boolean) RETURNS boolean
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION 'a new row does not match your policy''s condition' USING ERRCODE = 'BA001';
    END IF;
    RETURN true;
END
$$;
REVOKE ALL ON FUNCTION auth.check_policy(boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth.check_policy(boolean) TO anon, authenticated, service_role;

-- Idempotency keys are claimed and answered inside the write's transaction,
-- which now runs on the API login role. That role reaches them only through
-- these two functions, by an id that is an HMAC of the caller and the key
-- under the server's secret: SQL running inside a request cannot name
-- another caller's key, list keys, or read a stored reply.
DROP TABLE basalt.idempotency_keys;
CREATE TABLE basalt.idempotency_keys (
    id text PRIMARY KEY,
    fingerprint text NOT NULL,
    status integer,
    headers jsonb,
    body text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX idempotency_keys_expires_at ON basalt.idempotency_keys (expires_at);

-- Claims `p_id` (an expired key is taken over): `claimed` is true when this
-- transaction now holds it; otherwise the stored fingerprint and reply. A
-- concurrent claim of the same id waits on the unique index until the first
-- transaction ends.
CREATE FUNCTION basalt.idempotency_claim(p_id text, p_fingerprint text, p_ttl_secs double precision)
RETURNS TABLE (claimed boolean, fingerprint text, status integer, headers jsonb, body text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO basalt.idempotency_keys AS k (id, fingerprint, expires_at)
    VALUES (p_id, p_fingerprint, now() + make_interval(secs => p_ttl_secs))
    ON CONFLICT (id) DO UPDATE
        SET fingerprint = EXCLUDED.fingerprint, status = NULL, headers = NULL,
            body = NULL, created_at = now(), expires_at = EXCLUDED.expires_at
        WHERE k.expires_at <= now();
    IF FOUND THEN
        RETURN QUERY SELECT true, NULL::text, NULL::integer, NULL::jsonb, NULL::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT false, k.fingerprint, k.status, k.headers, k.body
        FROM basalt.idempotency_keys k WHERE k.id = p_id;
END
$$;

-- Stores the reply of the request that holds `p_id` (only while unanswered).
CREATE FUNCTION basalt.idempotency_store(p_id text, p_status integer, p_headers jsonb, p_body text)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    UPDATE basalt.idempotency_keys SET status = p_status, headers = p_headers, body = p_body
    WHERE id = p_id AND status IS NULL
$$;

REVOKE ALL ON FUNCTION basalt.idempotency_claim(text, text, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION basalt.idempotency_store(text, integer, jsonb, text) FROM PUBLIC;

-- Zero-setup privileges: the API roles get privileges on the exposed schemas
-- (Basalt's policies are the gate, RLS still applies where enabled). The
-- schemas and roles are written here at start-up from the configuration
-- (`rest.grant_api_roles`); the event trigger grants on every table, view,
-- sequence and function created in them afterwards, whoever creates it.
CREATE TABLE basalt.api_grants (
    schema_name name NOT NULL,
    role_name name NOT NULL,
    -- The API login role gets USAGE on the schemas only: statements are
    -- prepared before the transaction switches role, and preparing resolves
    -- names.
    schema_only boolean NOT NULL DEFAULT false,
    PRIMARY KEY (schema_name, role_name)
);

CREATE FUNCTION basalt.grant_api_roles() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    created record;
BEGIN
    -- schema_name is plain; object_identity is quoted (for a schema, it is
    -- the schema's own name).
    FOR created IN
        SELECT c.object_type, c.object_identity, g.role_name, g.schema_only
        FROM pg_event_trigger_ddl_commands() c
        JOIN basalt.api_grants g
          ON CASE WHEN c.object_type = 'schema' THEN c.object_identity = quote_ident(g.schema_name)
                  ELSE c.schema_name = g.schema_name END
        WHERE NOT c.in_extension
          AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g.role_name)
          -- An ALTER TABLE may add a serial column's sequence; the table's
          -- own privileges are left as they are (a REVOKE sticks).
          AND (c.command_tag <> 'ALTER TABLE' OR c.object_type = 'sequence')
    LOOP
        IF created.object_type = 'schema' THEN
            EXECUTE format('GRANT USAGE ON SCHEMA %s TO %I', created.object_identity, created.role_name);
        ELSIF created.schema_only THEN
            NULL;
        ELSIF created.object_type IN ('table', 'view', 'materialized view', 'foreign table') THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s TO %I',
                           created.object_identity, created.role_name);
        ELSIF created.object_type = 'sequence' THEN
            EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I',
                           created.object_identity, created.role_name);
        ELSIF created.object_type IN ('function', 'procedure') THEN
            EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %I',
                           created.object_identity, created.role_name);
        END IF;
    END LOOP;
END
$$;

DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        DROP EVENT TRIGGER IF EXISTS basalt_grant_api_roles;
        CREATE EVENT TRIGGER basalt_grant_api_roles ON ddl_command_end
            WHEN TAG IN ('CREATE SCHEMA', 'CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'CREATE VIEW',
                         'CREATE MATERIALIZED VIEW', 'CREATE FOREIGN TABLE', 'CREATE SEQUENCE',
                         'CREATE FUNCTION', 'CREATE PROCEDURE', 'ALTER TABLE')
            EXECUTE FUNCTION basalt.grant_api_roles();
    ELSE
        RAISE NOTICE 'not a superuser: no grant trigger; new objects get the API roles'' privileges at the next start-up';
    END IF;
END
$$;
