//! End-to-end tests of the `farm` binary against a real registry (Debian's
//! `docker-registry`), a token server, fault-injecting proxies and images built at test
//! time. Fixtures live in [`support`]; one module per area.
//!
//! Prerequisites (docker-registry, htpasswd, openssl, skopeo, overlayfs, root; for `farm
//! run` also cgroups and gcc with a static libc for the probe) are checked per test: when
//! `CI=true` a missing one fails the test, otherwise the test is skipped with a printed
//! reason.

mod support;

mod auth;
mod cp;
mod exec;
mod faults;
mod fixtures;
mod gpu;
mod info;
mod lifecycle;
mod lifecycle_faults;
mod limits;
mod network;
mod offline;
mod parity;
mod pull;
mod restart;
mod review;
mod run;
mod sandbox;
mod save;
mod secrets;
mod stats;
mod store;
mod top_rename;
mod trust;
mod worker;
