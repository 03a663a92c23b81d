//! `farm init` and `farm identity`: the node's keys, tokens, sealing and the wallet link.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use farm_trust::wallet::LinkRequest;
use farm_trust::{seal, token, wallet, Identity};

use super::Globals;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Print the node's public identity as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct IdentityArgs {
    #[command(subcommand)]
    command: IdentityCommand,
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Show node_id and the public keys (base64url, raw 32 bytes)
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Print a signed token (compact JWS, EdDSA) that proves this node's identity
    Token {
        /// Who the token is for (its `aud` claim)
        #[arg(long)]
        audience: String,
        /// How long it is valid: 30s, 10m, 2h
        #[arg(long, default_value = "10m", value_parser = super::run::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Link this node to the wallet its earnings go to (Sign-In with Ethereum)
    LinkWallet {
        /// Start: the wallet's address; farm prints the message to sign in that wallet
        #[arg(long, conflicts_with = "signature")]
        address: Option<String>,
        /// Finish: the wallet's signature of the message (0x + 130 hex digits)
        #[arg(long)]
        signature: Option<String>,
        /// The service the link is for (EIP-4361 domain)
        #[arg(long, default_value = "farm.local")]
        domain: String,
        #[arg(long, default_value = "https://farm.local/link")]
        uri: String,
        #[arg(long, default_value_t = 1)]
        chain_id: u64,
    },
    /// Seal a value to a node's X25519 key (this node's unless --to), as a job owner would
    Seal {
        /// The node's x25519_public_key (base64url)
        #[arg(long)]
        to: Option<String>,
        /// The value; read from stdin when absent (keeps it out of the shell history)
        value: Option<String>,
    },
}

pub fn init(globals: &Globals, args: InitArgs) -> Result<u8> {
    let (identity, created) = Identity::init(&globals.root)?;
    let public = identity.public();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&public)?);
    } else {
        let verb = if created { "created" } else { "already has" };
        println!(
            "{} {verb} node identity {}",
            globals.root.display(),
            public.node_id
        );
    }
    Ok(0)
}

pub fn run(globals: &Globals, args: IdentityArgs) -> Result<u8> {
    let identity = || Identity::load(&globals.root);
    match args.command {
        IdentityCommand::Show { json } => show(globals, &identity()?, json)?,
        IdentityCommand::Token { audience, ttl } => {
            let now = farm_trust::unix_now();
            println!(
                "{}",
                token::issue(&identity()?, &audience, ttl.as_secs(), now)
            );
        }
        IdentityCommand::LinkWallet {
            address,
            signature,
            domain,
            uri,
            chain_id,
        } => {
            let id = identity()?;
            match (address, signature) {
                (Some(address), None) => {
                    let req = LinkRequest {
                        domain,
                        uri,
                        chain_id,
                    };
                    let message = wallet::start(&globals.root, &req, &id.node_id(), &address)?;
                    println!("{message}");
                    eprintln!("Sign this message in your wallet (personal_sign), then run: farm identity link-wallet --signature 0x…");
                }
                (None, Some(signature)) => {
                    let link = wallet::finish(&globals.root, &id.node_id(), &signature)?;
                    println!("linked {} to wallet {}", id.node_id(), link.address);
                }
                _ => bail!("give --address to start a wallet link, or --signature to finish it"),
            }
        }
        IdentityCommand::Seal { to, value } => {
            let key = match to {
                Some(key) => key,
                None => identity()?.public().x25519_public_key,
            };
            let value = match value {
                Some(v) => v,
                None => std::io::read_to_string(std::io::stdin())?
                    .trim_end_matches('\n')
                    .to_owned(),
            };
            println!("{}", seal::seal_to(&key, value.as_bytes())?);
        }
    }
    Ok(0)
}

fn show(globals: &Globals, identity: &Identity, json: bool) -> Result<()> {
    let public = identity.public();
    let link = wallet::linked(&globals.root);
    if json {
        let mut value = serde_json::to_value(&public)?;
        value["wallet"] = serde_json::json!(link.map(|l| l.address));
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("node_id             {}", public.node_id);
    println!("ed25519_public_key  {}", public.ed25519_public_key);
    println!("x25519_public_key   {}", public.x25519_public_key);
    println!(
        "wallet              {}",
        link.map_or(
            "not linked (farm identity link-wallet --address 0x…)".to_owned(),
            |l| l.address
        )
    );
    Ok(())
}
