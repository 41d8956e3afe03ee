-- The change feed: every insert, update and delete of a table enabled for
-- capture is recorded by a row trigger in the same transaction as the data.
--
-- Positions follow commit order without gaps. A change is inserted without a
-- position; a deferred constraint trigger, which runs as the transaction
-- commits, takes one advisory lock and numbers all of that transaction's
-- changes from a sequence. The lock is held until the commit completes, so a
-- later transaction can only number its changes after this one's are visible
-- (or gone, if it aborted): a reader that has seen position p + 1 will never
-- see p appear later. Long transactions are numbered when they commit, after
-- everything that committed before them.
CREATE TABLE basalt.changes (
    id bigserial PRIMARY KEY,
    position bigint UNIQUE,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    schema_name text NOT NULL,
    table_name text NOT NULL,
    operation text NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    old_row jsonb,
    new_row jsonb,
    committed_at timestamptz
);

CREATE INDEX changes_unnumbered ON basalt.changes (xid) WHERE position IS NULL;
CREATE INDEX changes_committed_at ON basalt.changes (committed_at);

CREATE SEQUENCE basalt.change_position AS bigint;

-- What pruning removed: positions at or below are gone (a consumer whose
-- cursor is older has a gap and must refetch).
CREATE TABLE basalt.feed_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pruned_through bigint NOT NULL DEFAULT 0
);
INSERT INTO basalt.feed_state DEFAULT VALUES;

-- Named consumers (realtime replicas, webhooks, search) and their cursors.
CREATE TABLE basalt.feed_consumers (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION basalt.capture_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO basalt.changes (schema_name, table_name, operation, old_row, new_row)
    VALUES (
        TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP,
        CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END,
        CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END
    );
    RETURN NULL;
END
$$;

CREATE FUNCTION basalt.number_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    -- The first deferred firing of a transaction numbers all its changes;
    -- the others find nothing left to do.
    IF NOT EXISTS (
        SELECT 1 FROM basalt.changes WHERE id = NEW.id AND position IS NULL
    ) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('basalt.changes'));
    UPDATE basalt.changes c
       SET position = numbered.position, committed_at = clock_timestamp()
      FROM (
        SELECT id, nextval('basalt.change_position') AS position
          FROM (SELECT id FROM basalt.changes
                 WHERE xid = pg_current_xact_id() AND position IS NULL
                 ORDER BY id) ordered
      ) numbered
     WHERE c.id = numbered.id;
    PERFORM pg_notify('basalt_changes', '');
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER number_at_commit
    AFTER INSERT ON basalt.changes
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION basalt.number_changes();
