-- A durable job queue shared by every feature that works after the response
-- (auth emails now; webhooks and cron next). Workers claim due jobs with
-- FOR UPDATE SKIP LOCKED, so replicas never run one job twice at once.
CREATE TABLE basalt.jobs (
    id bigserial PRIMARY KEY,
    queue text NOT NULL,
    payload jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    run_at timestamptz NOT NULL DEFAULT now(),
    -- A running job whose lease passed (its worker died) is claimed again.
    locked_until timestamptz,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_due_idx ON basalt.jobs (run_at, id) WHERE status IN ('pending', 'running');

-- Single-use tokens sent by email (confirmation, recovery, magic link, email
-- change), stored as SHA-256 hashes.
CREATE TABLE auth.one_time_tokens (
    id bigserial PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('signup', 'recovery', 'magiclink', 'email_change')),
    token_hash bytea NOT NULL UNIQUE,
    new_email text,
    redirect_to text,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX one_time_tokens_user_idx ON auth.one_time_tokens (user_id, kind);
ALTER TABLE auth.users ADD COLUMN email_change_sent_at timestamptz;
ALTER TABLE auth.users ADD COLUMN new_email text;
