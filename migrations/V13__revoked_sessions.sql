-- Revocation within seconds on every replica (server/src/auth/revoked.rs).
-- Access tokens are checked without a query, so a revoked session's token
-- would keep working until it expires. Every revocation (sign-out, ban,
-- password change, admin action) sets auth.sessions.revoked_at; deleting a
-- user deletes its sessions. Both are recorded here by a trigger, with a
-- NOTIFY that wakes every replica to read what is new into memory. Rows
-- older than the longest access token lifetime are pruned.
CREATE TABLE auth.revoked_sessions (
    position bigserial PRIMARY KEY,
    session_id uuid NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_sessions_revoked_at ON auth.revoked_sessions (revoked_at);

CREATE FUNCTION auth.record_revoked_session() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO auth.revoked_sessions (session_id) VALUES (OLD.id);
    PERFORM pg_notify('basalt_revoked', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_revoked AFTER UPDATE OF revoked_at ON auth.sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION auth.record_revoked_session();
CREATE TRIGGER sessions_deleted AFTER DELETE ON auth.sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL)
    EXECUTE FUNCTION auth.record_revoked_session();
