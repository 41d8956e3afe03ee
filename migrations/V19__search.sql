-- Search indexes (/search/v1): each index's declaration and status, and a
-- schema of its own for the text search configurations and the extensions
-- (unaccent, pg_trgm) that indexes may use. The API roles may use what is
-- in it (their searches name its configurations); nothing else lives there.
CREATE SCHEMA IF NOT EXISTS basalt_search;
REVOKE ALL ON SCHEMA basalt_search FROM PUBLIC;
GRANT USAGE ON SCHEMA basalt_search TO anon, authenticated, service_role;

CREATE TABLE basalt.search_indexes (
    name text PRIMARY KEY,
    definition jsonb NOT NULL,
    -- From the config file ([[search.indexes]]): the API may not change it.
    declared boolean NOT NULL DEFAULT false,
    -- The PostgreSQL backend's text search configuration and pg_trgm's schema.
    text_config text NOT NULL,
    trgm_schema text,
    -- Whether basalt_search.<name> holds the rows' vectors (a table's
    -- PostgreSQL index; a view is searched without one).
    documents boolean NOT NULL DEFAULT false,
    -- building | ready | failed (Meilisearch: the sync worker's view).
    state text NOT NULL DEFAULT 'ready',
    last_error text,
    -- When and why the index was last rebuilt from the table.
    rebuilt_at timestamptz,
    rebuild_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
