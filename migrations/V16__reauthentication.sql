-- Reauthentication (supabase-js `auth.reauthenticate()`): a six-digit code
-- emailed to a signed-in user, asked for by PUT /auth/v1/user to change the
-- password when auth.secure_password_change is on. Kept hashed, with the
-- emailed links' tokens.
ALTER TABLE auth.one_time_tokens DROP CONSTRAINT one_time_tokens_kind_check;
ALTER TABLE auth.one_time_tokens ADD CONSTRAINT one_time_tokens_kind_check
    CHECK (kind IN ('signup', 'recovery', 'magiclink', 'email_change', 'reauthentication'));
