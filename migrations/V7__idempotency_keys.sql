-- Responses of data API writes sent with an Idempotency-Key, stored in the
-- same transaction as the write itself: a retry replays the response and
-- writes nothing; a concurrent request with the same key waits on the row's
-- unique index until the first one commits (then replays) or rolls back
-- (then runs). Keys belong to one caller (user id or API key role).
CREATE TABLE basalt.idempotency_keys (
    owner text NOT NULL,
    key text NOT NULL,
    fingerprint text NOT NULL,
    status integer,
    headers jsonb,
    body text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (owner, key)
);

CREATE INDEX idempotency_keys_expires_at ON basalt.idempotency_keys (expires_at);
