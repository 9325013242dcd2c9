//! The Liveshop front door: configuration, authentication, the REST API, the WebSocket gateway,
//! `/metrics`, and the composition root that wires storage and the actor tree together.

pub mod admission;
pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod extract;
pub mod http_io;
pub mod json_error;
pub mod memory;
pub mod middleware;
pub mod openapi;
pub mod pages;
pub mod plain;
pub mod readiness;
pub mod routes;
pub mod serve;
pub mod state;
pub mod telemetry;
pub mod ws;

pub use app::Application;
pub use config::Config;
