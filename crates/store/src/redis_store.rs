//! Redis adapter (being written).
