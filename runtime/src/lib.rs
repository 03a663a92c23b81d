//! farm-runtime: an image config and run options in, a running sandboxed container out.
//!
//! Not built yet: `farm run` is the next issue. This crate exists so that the workspace
//! has its final shape and `farm-puller` stays free of anything container-related.
