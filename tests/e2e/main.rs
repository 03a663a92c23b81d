//! End-to-end tests of the `farm` binary against a real registry (Debian's
//! `docker-registry`), a token server, fault-injecting proxies and images built at test
//! time. Fixtures live in [`support`]; one module per area.
//!
//! Prerequisites (docker-registry, htpasswd, openssl, skopeo, overlayfs, root) are checked
//! per test: when `CI=true` a missing one fails the test, otherwise the test is skipped
//! with a printed reason.

mod support;

mod auth;
mod faults;
mod fixtures;
mod offline;
mod pull;
mod store;
