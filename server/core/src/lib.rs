//! Basalt's pure parts: everything here is a function of its inputs, with no I/O,
//! no clock reads beyond what callers pass in, no database and no HTTP. The server
//! crate does the I/O and hands these modules plain values, so they are tested
//! without any running service.

pub mod auth_rules;
pub mod config;
pub mod errors;
pub mod filter;
pub mod forwarded;
pub mod policy;
pub mod rate;
pub mod rest;
pub mod search;
pub mod storage;
