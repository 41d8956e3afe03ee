-- Anonymous sign-ins (GoTrue's signInAnonymously): a user without an email
-- address until they add one, marked `is_anonymous` (also in their tokens).
ALTER TABLE auth.users ALTER COLUMN email DROP NOT NULL;
ALTER TABLE auth.users ADD COLUMN is_anonymous boolean NOT NULL DEFAULT false;
ALTER TABLE auth.users ADD CONSTRAINT users_email_or_anonymous
    CHECK (email IS NOT NULL OR is_anonymous);
