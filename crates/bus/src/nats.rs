//! NATS JetStream adapter (being written).
