//! Envelope codec (being written).
