-- Six-digit codes in auth emails (supabase-js `verifyOtp({email, token,
-- type})`): each emailed link's token comes with a code, kept as an HMAC
-- of the user and the code; five wrong codes void the code (not the link).
ALTER TABLE auth.one_time_tokens ADD COLUMN code_hash bytea;
ALTER TABLE auth.one_time_tokens ADD COLUMN code_failures int NOT NULL DEFAULT 0;
