//! Auth under `/auth/v1/`: users, passwords, sessions with rotating refresh
//! tokens, the admin user API and emailed tokens. Who is calling (tokens and
//! the extractors) is `crate::identity`; the audit log is `crate::audit`.

pub mod admin;
pub mod email;
pub mod links;
pub mod mfa;
pub mod passwords;
pub mod routes;
pub mod sessions;
pub mod users;

impl crate::state::AppState {
    pub fn passwords(&self) -> &std::sync::Arc<passwords::Passwords> {
        self.services.get()
    }
}
