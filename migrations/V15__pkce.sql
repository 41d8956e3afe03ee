-- The PKCE flow (supabase-js `flowType: 'pkce'`): an emailed link made for
-- a PKCE client carries the client's code challenge; following it gives the
-- app an authorization code, exchanged with the code verifier for a session
-- (`POST /auth/v1/token?grant_type=pkce`).
ALTER TABLE auth.one_time_tokens ADD COLUMN code_challenge text;
ALTER TABLE auth.one_time_tokens ADD COLUMN code_challenge_method text
    CHECK (code_challenge_method IN ('s256', 'plain'));

CREATE TABLE auth.flow_states (
    id bigserial PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    -- SHA-256 of the authorization code: the code itself is never stored.
    auth_code_hash bytea NOT NULL UNIQUE,
    code_challenge text NOT NULL,
    code_challenge_method text NOT NULL CHECK (code_challenge_method IN ('s256', 'plain')),
    -- What the link verified (signup, magiclink, recovery, email_change).
    authentication_method text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);
