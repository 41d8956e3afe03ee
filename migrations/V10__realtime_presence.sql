-- Realtime presence: what each connected client tracks on a channel, kept
-- in PostgreSQL so members on every replica see it. Each replica records
-- that it is alive every few seconds; the rows of a replica not seen for a
-- while are removed by the others (its clients are gone), and their members
-- are told. Unlogged: presence does not survive a database crash, and need not.
CREATE UNLOGGED TABLE basalt.realtime_replicas (
    id uuid PRIMARY KEY,
    seen_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNLOGGED TABLE basalt.presence (
    replica uuid NOT NULL,
    connection bigint NOT NULL,
    topic text NOT NULL,
    key text NOT NULL,
    state jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (replica, connection, topic)
);

CREATE INDEX presence_topic ON basalt.presence (topic);
