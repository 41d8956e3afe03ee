-- Storage: buckets and the metadata of their objects. Blobs live in the
-- backend (local disk or S3) under keys Basalt makes (`objects/<xx>/<uuid>`),
-- never under the object's name; an object row points at its blob. A blob is
-- written before the row that refers to it is committed, so a crash leaves at
-- worst a blob no row refers to, which the cleanup task removes.
CREATE SCHEMA IF NOT EXISTS storage;

CREATE TABLE storage.buckets (
    id text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    public boolean NOT NULL DEFAULT false,
    file_size_limit bigint CHECK (file_size_limit > 0),
    allowed_mime_types text[] NOT NULL DEFAULT '{}',
    -- 'api', or 'config' for buckets declared in the config file.
    source text NOT NULL DEFAULT 'api',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE storage.objects (
    id uuid PRIMARY KEY,
    bucket_id text NOT NULL REFERENCES storage.buckets (id),
    name text NOT NULL CHECK (octet_length(name) BETWEEN 1 AND 1024),
    owner uuid,
    -- The backend key of the current content; a new one for every write.
    blob text NOT NULL UNIQUE,
    size bigint NOT NULL CHECK (size >= 0),
    content_type text NOT NULL,
    cache_control text NOT NULL,
    -- SHA-256 of the content, hex; the ETag.
    checksum text NOT NULL,
    -- Counts the writes to this name.
    version integer NOT NULL DEFAULT 1,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bucket_id, name)
);
CREATE INDEX objects_prefix ON storage.objects (bucket_id, name text_pattern_ops);

-- Signed upload URLs are single use: the token's id is recorded in the
-- transaction that commits the uploaded object.
CREATE TABLE storage.spent_upload_tokens (
    id text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

-- Resumable (TUS) uploads in progress. Each PATCH is stored as one part blob
-- (`uploads/<id>/<uuid>`), listed in order in `part_keys` by the statement
-- that moves the offset; the last one assembles the object.
CREATE TABLE storage.resumable_uploads (
    id uuid PRIMARY KEY,
    bucket_id text NOT NULL REFERENCES storage.buckets (id) ON DELETE CASCADE,
    name text NOT NULL,
    owner uuid,
    upsert boolean NOT NULL,
    content_type text NOT NULL,
    cache_control text NOT NULL,
    length bigint NOT NULL CHECK (length >= 0),
    "offset" bigint NOT NULL DEFAULT 0,
    part_keys text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

-- Object changes go into the change feed as `storage.objects`.
CREATE TRIGGER basalt_capture AFTER INSERT OR UPDATE OR DELETE ON storage.objects
    FOR EACH ROW EXECUTE FUNCTION basalt.capture_change();
