//! ARES, the Agent Reliability Enforcement System: an MCP server that checks what AI agents
//! claim to have done, scores them, and enforces consequences.
//!
//! A map of the crate:
//! - Domain rules, pure and unit-tested: [`agents`], [`tasks`] (the state machine),
//!   [`evidence`] (items, digests, the hash chain), [`verification`] (criteria and their
//!   evaluation), [`reliability`] (scores), [`routing`] (who gets a task), [`enforcement`]
//!   (actions and their effect on an agent), [`reports`].
//! - [`service`]: the operations behind every tool — validation, state changes, and one
//!   atomic store write each.
//! - [`store`]: the storage interface with its SQLite and PostgreSQL implementations.
//! - [`mcp`]: the MCP face — tool schemas, argument decoding, the one error mapping.
//! - [`server`]: serving over stdio or streamable HTTP, with graceful shutdown.
//! - [`dashboard`]: the live web dashboard and report downloads over HTTP.
//! - [`metrics`]: what `/metrics` exports to Prometheus, fed by the event bus.
//! - [`audit`]: the tamper-evident audit log — hash-chained entries written with every
//!   change, signed checkpoints, and the walk that finds the first edited entry.
//! - [`cache`]: the read cache (agents, reliability, task counts), in Redis or in process,
//!   emptied of what each commit changes.
//! - [`downstream`]: the MCP servers ground truth is checked through (files, commands,
//!   lint, pages), kept connected; [`code_checker`] is ARES's own command-running server.
#![forbid(unsafe_code)]

pub mod agents;
pub mod audit;
pub mod auth;
pub mod behaviour;
pub mod cache;
pub mod clock;
pub mod code_checker;
pub mod config;
pub mod dashboard;
pub mod downstream;
pub mod enforcement;
pub mod error;
pub mod events;
pub mod evidence;
pub mod failpoint;
pub mod mcp;
pub mod metrics;
pub mod redis_link;
pub mod reliability;
pub mod reports;
pub mod routing;
pub mod server;
pub mod service;
pub mod signing;
pub mod store;
pub mod tasks;
pub mod verification;

pub use error::{AresError, AresResult};
pub use service::Ares;
