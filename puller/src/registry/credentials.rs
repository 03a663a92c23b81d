//! Where credentials come from: the caller, farm's own auth file (`farm login`), docker's
//! `config.json` (`auths`, `credsStore`, `credHelpers`, running `docker-credential-*`).
//! OWNER: helper "registry". Interface below is fixed; bodies are to be written.

use std::path::{Path, PathBuf};

use super::{RegistryError, RegistryOptions};
use crate::secret::Credentials;

/// farm's credential store: a docker-format `{"auths": {...}}` JSON file, mode 0600.
#[derive(Debug, Clone)]
pub struct AuthFile {
    path: PathBuf,
}

impl AuthFile {
    pub fn new(path: &Path) -> AuthFile {
        AuthFile {
            path: path.to_owned(),
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Store credentials for `registry` (write-then-rename, 0600).
    pub fn save(&self, _registry: &str, _credentials: &Credentials) -> Result<(), RegistryError> {
        todo!()
    }
    /// Remove credentials for `registry`; false if there were none.
    pub fn remove(&self, _registry: &str) -> Result<bool, RegistryError> {
        todo!()
    }
    pub fn get(&self, _registry: &str) -> Result<Option<Credentials>, RegistryError> {
        todo!()
    }
}

/// Credentials for `registry`, in order: the caller's, farm's auth file, docker's config.
pub fn lookup(
    _registry: &str,
    _options: &RegistryOptions,
) -> Result<Option<Credentials>, RegistryError> {
    todo!()
}
