-- Authorization: roles, role inheritance, user role assignments and policies,
-- loaded into the casbin engine of every replica (see server/src/authz/).
CREATE TABLE basalt.roles (
    name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    description text NOT NULL DEFAULT '',
    -- 'builtin', 'api' or 'config' (declared in the config file).
    source text NOT NULL DEFAULT 'api',
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO basalt.roles (name, description, source) VALUES
    ('anon', 'Requests with the anon key and no user', 'builtin'),
    ('authenticated', 'Every signed-in user', 'builtin'),
    ('service_role', 'Servers and admins: bypasses policies', 'builtin');

-- `role` inherits every permission of `parent`.
CREATE TABLE basalt.role_parents (
    role text NOT NULL REFERENCES basalt.roles (name) ON DELETE CASCADE,
    parent text NOT NULL REFERENCES basalt.roles (name) ON DELETE CASCADE,
    source text NOT NULL DEFAULT 'api',
    PRIMARY KEY (role, parent),
    CHECK (role <> parent)
);

CREATE TABLE basalt.user_roles (
    user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    role text NOT NULL REFERENCES basalt.roles (name) ON DELETE CASCADE,
    source text NOT NULL DEFAULT 'api',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role)
);

CREATE TABLE basalt.policies (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- A role name, or `user:<uuid>`.
    subject text NOT NULL,
    -- `table:<schema>.<name>`, `bucket:<name>/<prefix>`, `channel:<topic>`,
    -- `index:<name>`, `admin:<area>`; a trailing `*` matches any rest.
    object text NOT NULL,
    action text NOT NULL,
    -- A row condition in the data API's filter grammar, e.g. owner=eq.{auth.uid}.
    condition text,
    -- Columns this policy lets the subject read or write; NULL: all.
    columns text[],
    description text NOT NULL DEFAULT '',
    source text NOT NULL DEFAULT 'api',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX policies_subject_idx ON basalt.policies (subject);
