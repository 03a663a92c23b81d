//! farm-runtime: an image config and run options in, a running sandboxed container out.
//!
//! The flow of one `farm run`: [`spec`] turns the image config and [`RunOptions`] into an
//! OCI runtime [`oci_spec::runtime::Spec`]; [`rootfs`] mounts the image's snapshots through
//! idmapped mounts under a per-container writable layer; [`container`] hands both to
//! libcontainer (the only module that calls it) from a [`monitor`] process that holds the
//! container, writes its [`logs`] and records its exit and [`cgroups`] usage in the
//! [`state`] store. [`sandbox`] holds what boxes every container in: the user-namespace
//! id ranges, seccomp, capabilities and masked paths.

pub mod cgroups;
pub mod container;
pub mod copy;
pub mod error;
pub mod exec;
pub mod gpu;
pub mod info;
pub mod layout;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod network;
pub mod options;
pub mod rootfs;
pub mod sandbox;
pub mod secrets;
pub mod spec;
pub mod state;
pub mod stats;
pub mod top;

pub use error::RuntimeError;
pub use options::RunOptions;
