//! The Basalt server as a library: the `basalt` binary (`main.rs`) is its
//! command line, and benchmarks reach the engines directly.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod background;
pub mod db;
pub mod embedded;
pub mod error;
pub mod feed;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod mail;
pub mod ops;
pub mod realtime;
pub mod rest;
pub mod search;
pub mod secrets;
pub mod serve;
pub mod settings;
pub mod state;
pub mod storage;
pub mod telemetry;
