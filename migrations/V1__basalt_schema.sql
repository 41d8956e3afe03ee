-- Basalt's own schema. Basalt keeps its tables here (and in later schemas it
-- creates, such as auth and storage), never in the application's `public`.
CREATE SCHEMA IF NOT EXISTS basalt;

-- One row describing this installation: created by the first migration, read by
-- `GET /admin/v1/status`.
CREATE TABLE basalt.instance (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    instance_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO basalt.instance DEFAULT VALUES;
