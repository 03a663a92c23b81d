//! `farm pull`

use std::io::{IsTerminal, Read};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use farm_puller::image::Platform;
use farm_puller::pull::{PlatformCheck, PullOptions, PullProgress};
use farm_puller::registry::RegistryClient;
use farm_puller::{Credentials, ImageSource};

use super::progress::{Bars, Lines, Quiet};
use super::Globals;

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Platform to pull from a multi-platform image, as os/arch[/variant] [default: this machine's]
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,

    /// Print only the image name when done
    #[arg(short, long)]
    quiet: bool,

    /// Username for this pull only (the password comes from --password-stdin)
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,

    /// Read the password for --username from standard input
    #[arg(long, requires = "username")]
    password_stdin: bool,

    /// Registry credentials sealed to this node (`USERNAME:PASSWORD`, sealed with
    /// `farm identity seal` or libsodium's crypto_box_seal to its x25519_public_key);
    /// opened in memory only
    #[arg(long, value_name = "SEALED_BASE64", conflicts_with = "username")]
    sealed_auth: Option<String>,

    /// NAME[:TAG|@DIGEST], oci:PATH[:TAG] or docker-archive:PATH
    image: String,
}

/// Open `USERNAME:PASSWORD` sealed to this node's identity under `root`.
pub fn sealed_credentials(root: &std::path::Path, sealed: &str) -> Result<Credentials> {
    let identity = farm_trust::Identity::load(root)?;
    let plain = farm_trust::seal::open(&identity, sealed).context("opening --sealed-auth")?;
    let text = std::str::from_utf8(&plain).map_err(|_| {
        anyhow::anyhow!("the sealed credentials are not text: seal USERNAME:PASSWORD")
    })?;
    let Some((user, password)) = text.split_once(':') else {
        bail!("the sealed credentials hold no ':': seal USERNAME:PASSWORD");
    };
    Ok(Credentials::new(user, password))
}

pub async fn run(globals: &Globals, args: PullArgs) -> Result<u8> {
    let source = ImageSource::parse(&args.image)?;
    let mut registry_options = globals.registry_options();
    if let Some(username) = args.username {
        registry_options.credentials = Some(Credentials::new(username, read_password_stdin()?));
    }
    if let Some(sealed) = &args.sealed_auth {
        registry_options.credentials = Some(sealed_credentials(&globals.root, sealed)?);
    }
    let options = pull_options(args.platform.as_deref())?;
    let client = RegistryClient::new(registry_options)?;
    let store = Arc::new(globals.open_store()?);

    let progress: Arc<dyn PullProgress> = if args.quiet {
        Arc::new(Quiet)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::new())
    } else {
        Arc::new(Lines::default())
    };
    let record = farm_puller::pull::pull(store, &client, &source, &options, progress)
        .await
        .map_err(|e| super::shown_pull_error(e, client.scrubber()))
        .with_context(|| format!("pulling {}", source.name()))?;
    if args.quiet {
        println!("{}", record.name);
    }
    Ok(0)
}

/// Options of a pull from the command line: the platform, defaults for the rest.
pub fn pull_options(platform: Option<&str>) -> Result<PullOptions> {
    let (platform, platform_check) = match platform {
        Some(platform) => (Platform::parse(platform)?, PlatformCheck::Require),
        None => (Platform::host(), PlatformCheck::Warn),
    };
    Ok(PullOptions {
        platform,
        max_concurrent_downloads: 3,
        max_image_bytes: 256 << 30,
        limits: Default::default(),
        platform_check,
    })
}

/// A password piped on standard input, without its trailing newline.
pub fn read_password_stdin() -> Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .take(64 << 10)
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("the password on standard input is empty: pipe it in, e.g. `echo \"$TOKEN\" | farm login -u USER --password-stdin HOST`");
    }
    Ok(password)
}
