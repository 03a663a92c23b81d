//! The per-container monitor process.
