//! Where a container's files live under the farm root.

use std::path::{Path, PathBuf};

/// The runtime's part of a farm root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_owned(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/containers`: one folder per container.
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// `<root>/containers/<id>`: upper and work dirs, the spec, logs, etc files.
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    /// `<root>/staging`: container folders being made, before they move into containers/.
    pub fn staging_root(&self) -> PathBuf {
        self.root.join("staging")
    }

    pub fn staging(&self, id: &str) -> PathBuf {
        self.staging_root().join(id)
    }

    /// Held (flock) by the container's monitor for as long as it lives.
    pub fn monitor_lock(&self, id: &str) -> PathBuf {
        self.container(id).join("monitor.lock")
    }

    pub fn log(&self, id: &str) -> PathBuf {
        self.container(id).join("container.log")
    }

    /// libcontainer's state folder (`with_root_path`).
    pub fn run_root(&self) -> PathBuf {
        self.root.join("run")
    }

    /// The cgroup of a container, relative to each hierarchy's root.
    pub fn cgroups_path(id: &str) -> PathBuf {
        PathBuf::from(format!("/farm/{id}"))
    }
}
