-- Multi-factor authentication with TOTP (supabase-js `auth.mfa`): a user's
-- factors, the challenges they answer, and each session's assurance level
-- (`aal1`, or `aal2` once a factor was verified in it) and its
-- authentication methods (`amr`), copied into its access tokens.
CREATE TABLE auth.mfa_factors (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    friendly_name text,
    factor_type text NOT NULL CHECK (factor_type = 'totp'),
    status text NOT NULL DEFAULT 'unverified' CHECK (status IN ('unverified', 'verified')),
    -- The TOTP secret, sealed (AES-256-GCM under a key derived from the
    -- server secret, bound to the user): never stored as it is.
    secret text NOT NULL,
    -- The last time step a code was accepted for: a code works once.
    last_step bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mfa_factors_user_idx ON auth.mfa_factors (user_id);
CREATE UNIQUE INDEX mfa_factors_name_idx ON auth.mfa_factors (user_id, friendly_name)
    WHERE friendly_name IS NOT NULL;

CREATE TABLE auth.mfa_challenges (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    factor_id uuid NOT NULL REFERENCES auth.mfa_factors (id) ON DELETE CASCADE,
    session_id uuid NOT NULL REFERENCES auth.sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    verified_at timestamptz,
    -- Answered with a wrong code: recent failures lock the factor for a while.
    failed boolean NOT NULL DEFAULT false,
    ip inet
);
CREATE INDEX mfa_challenges_factor_idx ON auth.mfa_challenges (factor_id);

ALTER TABLE auth.sessions ADD COLUMN aal text NOT NULL DEFAULT 'aal1' CHECK (aal IN ('aal1', 'aal2'));
ALTER TABLE auth.sessions ADD COLUMN amr jsonb NOT NULL DEFAULT '[]';

-- Policies for subject `aal2` hold for callers whose session passed a
-- second factor (their token's `aal` claim), whatever their other roles.
INSERT INTO basalt.roles (name, description, source) VALUES
    ('aal2', 'Signed-in users whose session passed a second factor (MFA)', 'builtin')
ON CONFLICT (name) DO NOTHING;
