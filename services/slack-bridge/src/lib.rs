//! The Slack bridge: Slack in (Socket Mode, or the Events API over HTTP),
//! `AgentRequest`s onto NATS, replies from the durable reply stream back into
//! the right Slack thread. Any number of replicas; no local state.
//!
//! Module map:
//! - [`socket`]: Socket Mode connections (hello, acks, disconnect handover,
//!   idle watchdog, backoff, a cap on open sockets).
//! - [`http`]: `POST /slack/events` with signature verification ([`signature`]).
//! - [`events`]: Slack payload → routing decision (DM, mention, thread reply, ignore).
//! - [`ingest`]: dedupe, identity or pairing code, signed publish; acks follow it.
//! - [`commands`]: `/clawhive help|status|reset|pairing …`.
//! - [`replies`]: durable reply consumers; idempotent posting, split, mrkdwn ([`mrkdwn`]).
//! - [`stream`]: post-then-edit streaming of deltas at a bounded rate.
//! - [`web`]: the Slack Web API client (configurable base URL, 429 Retry-After).
//! - [`server`]: `start` / `run`, readiness.
//!
//! Invariants:
//! - an event is acked only after its request is stored in JetStream (or it is
//!   deliberately ignored or a duplicate);
//! - one Slack event → at most one request (store marker + `Nats-Msg-Id`);
//! - one reply → posted at most once per piece, across restarts and replicas;
//! - the bridge never answers a bot, itself included.

pub mod bridge;
pub mod commands;
pub mod events;
pub mod http;
pub mod ingest;
pub mod mrkdwn;
pub mod replies;
pub mod server;
pub mod signature;
pub mod socket;
pub mod stream;
pub mod web;

pub use bridge::{Bridge, Deps, SlackSecrets};
pub use server::{BridgeError, BridgeHandle, Readiness, run, run_observed, start};
