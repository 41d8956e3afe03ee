//! Authorization: one policy engine (casbin for the role graph, with row
//! conditions and column lists on top) that every route asks through
//! [`engine::Engine::authorize`], and the admin API that manages it.

pub mod adapter;
pub mod declared;
pub mod engine;
pub mod routes;

pub use engine::Engine;
