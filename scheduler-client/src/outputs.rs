//! A job's outputs folder to the coordinator: a tarball (symlinks stored as links,
//! never followed), its sha256 and size, refused locally past the job's cap, uploaded
//! in chunks from the offset the coordinator already holds (resumable after an outage
//! or a restart).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::protocol::{ErrorCode, Lease, OutputsAnswer, OutputsInfo, ReasonCode};
use crate::runtime::Runtime;
use crate::transport::{backoff, Outgoing};
use crate::worker::Worker;

/// The most bytes of one upload request.
pub const CHUNK: usize = 1 << 20;

type Failure = (ReasonCode, String);

/// Pack, check the cap, upload; the outputs' size and digest, or why not.
pub async fn deliver(
    worker: &Worker,
    lease: &Lease,
    max_bytes: u64,
) -> Result<OutputsInfo, Failure> {
    let dir = worker.runtime.outputs_dir(lease);
    let tarball = dir.with_extension("tar");
    let packed = {
        let (dir, tarball) = (dir.clone(), tarball.clone());
        tokio::task::spawn_blocking(move || pack(&dir, &tarball))
            .await
            .map_err(|e| (ReasonCode::OutputsFailed, e.to_string()))?
    };
    let info = packed.map_err(|e| {
        (
            ReasonCode::OutputsFailed,
            format!(
                "packing the outputs of {}: {e}",
                Runtime::container_name(lease)
            ),
        )
    })?;
    if info.size > max_bytes {
        return Err((
            ReasonCode::OutputsTooLarge,
            format!("the outputs are {} bytes, over the job's cap of {max_bytes}: they were not uploaded", info.size),
        ));
    }
    upload(worker, lease, &tarball, &info).await?;
    Ok(info)
}

fn pack(dir: &Path, tarball: &PathBuf) -> std::io::Result<OutputsInfo> {
    let file = std::fs::File::create(tarball)?;
    let mut builder = tar::Builder::new(file);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    if dir.exists() {
        builder.append_dir_all(".", dir)?;
    }
    builder.into_inner()?.sync_all()?;
    let bytes = std::fs::read(tarball)?;
    Ok(OutputsInfo {
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
    })
}

async fn upload(
    worker: &Worker,
    lease: &Lease,
    tarball: &Path,
    info: &OutputsInfo,
) -> Result<(), Failure> {
    let bytes = std::fs::read(tarball).map_err(|e| (ReasonCode::OutputsFailed, e.to_string()))?;
    let mut attempt = 0;
    let mut offset = received(worker, lease).await.unwrap_or(0);
    loop {
        let end = (offset as usize + CHUNK).min(bytes.len());
        let start = (offset as usize).min(end);
        match put(worker, lease, info, offset, &bytes[start..end]).await {
            Ok(answer) if answer.complete || answer.received >= info.size => return Ok(()),
            Ok(answer) => offset = answer.received,
            Err(e) => match (e.code(), e.body()) {
                (Some(ErrorCode::OffsetMismatch), Some(body)) => {
                    offset = body.received.unwrap_or(0)
                }
                (Some(ErrorCode::DigestMismatch), _) if attempt < 3 => {
                    attempt += 1;
                    offset = 0;
                }
                (Some(ErrorCode::TooLarge), _) => {
                    return Err((ReasonCode::OutputsTooLarge, e.to_string()))
                }
                (Some(_), _) => return Err((ReasonCode::OutputsFailed, e.to_string())),
                (None, _) => {
                    attempt += 1;
                    tokio::time::sleep(backoff(
                        attempt,
                        Duration::from_millis(100),
                        Duration::from_secs(5),
                    ))
                    .await;
                    offset = received(worker, lease).await.unwrap_or(offset);
                }
            },
        }
    }
}

async fn received(worker: &Worker, lease: &Lease) -> Option<u64> {
    let outgoing = Outgoing {
        method: reqwest::Method::GET,
        path: format!("v1/outputs/{}", lease.lease_id),
        content_type: "application/json",
        body: Vec::new(),
        timeout: Duration::from_secs(10),
    };
    let answer: OutputsAnswer = worker.transport.exchange(outgoing).await.ok()?;
    Some(answer.received)
}

async fn put(
    worker: &Worker,
    lease: &Lease,
    info: &OutputsInfo,
    offset: u64,
    chunk: &[u8],
) -> Result<OutputsAnswer, crate::transport::TransportError> {
    let outgoing = Outgoing {
        method: reqwest::Method::PUT,
        path: format!(
            "v1/outputs/{}?offset={offset}&size={}&sha256={}&fencing_token={}",
            lease.lease_id, info.size, info.sha256, lease.fencing_token
        ),
        content_type: "application/x-tar",
        body: chunk.to_vec(),
        timeout: Duration::from_secs(60),
    };
    worker.transport.exchange(outgoing).await
}
