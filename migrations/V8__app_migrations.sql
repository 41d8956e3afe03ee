-- The app's schema history: every change made through /admin/v1/tables is
-- applied in one transaction together with its row here, so the history is
-- exactly what ran. `basalt migrate --export DIR` writes them as SQL files.
CREATE TABLE basalt.app_migrations (
    version serial PRIMARY KEY,
    name text NOT NULL,
    statements text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL
);
