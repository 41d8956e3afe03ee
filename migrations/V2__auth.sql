-- Auth: users, sessions, rotating refresh tokens and the audit log, in the
-- `auth` schema (the names follow Supabase's, so existing SQL and RLS policies
-- that read auth.users keep working).
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL,
    encrypted_password text,
    email_confirmed_at timestamptz,
    banned_until timestamptz,
    role text NOT NULL DEFAULT 'authenticated',
    raw_app_meta_data jsonb NOT NULL DEFAULT '{"provider": "email", "providers": ["email"]}',
    raw_user_meta_data jsonb NOT NULL DEFAULT '{}',
    last_sign_in_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- One account per address, whatever its case.
CREATE UNIQUE INDEX users_email_key ON auth.users (lower(email));

CREATE TABLE auth.sessions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    refreshed_at timestamptz NOT NULL DEFAULT now(),
    -- Set from auth.session_max_lifetime_secs at sign-in; null: no limit.
    not_after timestamptz,
    revoked_at timestamptz,
    revoked_reason text,
    user_agent text,
    ip inet
);
CREATE INDEX sessions_user_id_idx ON auth.sessions (user_id);

-- Refresh tokens are stored as SHA-256 hashes. Each rotation spends a token and
-- issues its successor (parent_id); a session is one chain with one live tip.
CREATE TABLE auth.refresh_tokens (
    id bigserial PRIMARY KEY,
    token_hash bytea NOT NULL UNIQUE,
    session_id uuid NOT NULL REFERENCES auth.sessions (id) ON DELETE CASCADE,
    parent_id bigint REFERENCES auth.refresh_tokens (id) ON DELETE CASCADE,
    spent_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_session_idx ON auth.refresh_tokens (session_id);
CREATE INDEX refresh_tokens_parent_idx ON auth.refresh_tokens (parent_id);

CREATE TABLE auth.audit_log (
    id bigserial PRIMARY KEY,
    event text NOT NULL,
    actor_id uuid,
    actor_role text,
    target_user_id uuid,
    ip inet,
    details jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_created_at_idx ON auth.audit_log (created_at DESC);
