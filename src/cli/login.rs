//! `farm login` and `farm logout`

use std::io::{IsTerminal, Write};

use anyhow::{bail, Context, Result};
use clap::Args;
use farm_puller::registry::credentials::AuthFile;
use farm_puller::registry::RegistryClient;
use farm_puller::Credentials;

use super::pull::read_password_stdin;
use super::Globals;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,

    /// Password (insecure: it shows in `ps`; prefer --password-stdin)
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,

    /// Read the password (or token) from standard input
    #[arg(long)]
    password_stdin: bool,

    /// Registry host[:port]
    #[arg(default_value = "docker.io")]
    registry: String,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host[:port]
    #[arg(default_value = "docker.io")]
    registry: String,
}

pub async fn login(globals: &Globals, args: LoginArgs) -> Result<u8> {
    let registry = normalize_registry(&args.registry)?;
    let username = match args.username {
        Some(username) => username,
        None if std::io::stdin().is_terminal() && !args.password_stdin => prompt("Username: ")?,
        None => bail!("no username: pass it with -u USER"),
    };
    let password = if args.password_stdin {
        read_password_stdin()?
    } else if let Some(password) = args.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        password
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ").context("reading the password")?
    } else {
        bail!("no password: pipe it in with --password-stdin")
    };
    let credentials = Credentials::new(username, password);
    let client = RegistryClient::new(globals.registry_options())?;
    client
        .check_login(&registry, &credentials)
        .await
        .with_context(|| format!("login to {registry} failed"))?;
    let auth_file = AuthFile::new(&globals.auth_file());
    std::fs::create_dir_all(&globals.root)
        .with_context(|| format!("cannot create {}", globals.root.display()))?;
    auth_file.save(&registry, &credentials)?;
    println!("Login Succeeded");
    Ok(0)
}

pub fn logout(globals: &Globals, args: LogoutArgs) -> Result<u8> {
    let registry = normalize_registry(&args.registry)?;
    let auth_file = AuthFile::new(&globals.auth_file());
    if auth_file.remove(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(0)
}

/// `https://index.docker.io/v1/` -> `docker.io`; `https://host:5000/` -> `host:5000`.
fn normalize_registry(input: &str) -> Result<String> {
    let host = input
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host.is_empty()
        || host
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
    {
        bail!("invalid registry {input:?}: expected host[:port], e.g. ghcr.io or 127.0.0.1:5000");
    }
    Ok(match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_owned(),
        _ => host,
    })
}

fn prompt(label: &str) -> Result<String> {
    eprint!("{label}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::normalize_registry;

    #[test]
    fn registries_normalize_like_docker() {
        assert_eq!(
            normalize_registry("https://index.docker.io/v1/").unwrap(),
            "docker.io"
        );
        assert_eq!(
            normalize_registry("registry-1.docker.io").unwrap(),
            "docker.io"
        );
        assert_eq!(normalize_registry("GHCR.io").unwrap(), "ghcr.io");
        assert_eq!(
            normalize_registry("http://127.0.0.1:5000/").unwrap(),
            "127.0.0.1:5000"
        );
        assert!(normalize_registry("a b").is_err());
        assert!(normalize_registry("").is_err());
    }
}
