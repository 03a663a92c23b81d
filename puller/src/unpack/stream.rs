//! The uncompressed layer stream: decompression, the diff_id hasher and the byte cap.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;
use std::sync::{mpsc, Arc};

use sha2::{Digest as _, Sha256};

use crate::image::Compression;

/// Largest zstd window accepted: 2^27 = 128 MiB (what Docker and containerd accept).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Wrap `reader` in the decoder `compression` names.
pub(crate) fn decompress<'a, R: Read + 'a>(
    reader: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        // Multi-member: Go and Docker read every member; `GzDecoder` stops after the first.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(reader)?;
            decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(decoder)
        }
    })
}

/// What the tar reader has consumed so far; shared so errors can be classified while the
/// tar crate owns the reader.
#[derive(Debug, Default)]
pub(super) struct Meter {
    pub(super) bytes: Cell<u64>,
    pub(super) over_cap: Cell<bool>,
}

/// Hashes and counts every uncompressed byte that passes, and fails once more than `cap`
/// bytes went through (a stream of zeros after the archive end is a bomb too).
pub(super) struct Tee<R> {
    inner: R,
    /// None when the diff ID is hashed on another thread.
    hasher: Option<Sha256>,
    cap: u64,
    meter: Rc<Meter>,
}

impl<R: Read> Tee<R> {
    pub(super) fn new(inner: R, cap: u64, meter: Rc<Meter>) -> Tee<R> {
        Tee {
            inner,
            hasher: Some(Sha256::new()),
            cap,
            meter,
        }
    }

    /// Counts and caps, hashes nothing.
    pub(super) fn counting(inner: R, cap: u64, meter: Rc<Meter>) -> Tee<R> {
        Tee {
            inner,
            hasher: None,
            cap,
            meter,
        }
    }

    /// Read what is left to EOF (through the hasher and the cap) and return the hasher.
    pub(super) fn drain(mut self) -> io::Result<Sha256> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(self.hasher.unwrap_or_default()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.meter.over_cap.get() {
            return Err(over_cap(self.cap));
        }
        let n = self.inner.read(buf)?;
        let total = self.meter.bytes.get() + n as u64;
        self.meter.bytes.set(total);
        if total > self.cap {
            self.meter.over_cap.set(true);
            return Err(over_cap(self.cap));
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Decompressed bytes in flight between two threads of a pipelined unpack, per channel.
const PIPE_DEPTH: usize = 4;
const PIPE_CHUNK: usize = 256 << 10;

/// Start the decompression of `reader` and the sha256 of what it yields on two threads of
/// `scope`: the reader of the decompressed bytes, and the diff ID's hasher (complete once
/// the reader reached its end). A decompression error reaches the reader as its error.
pub(super) fn pipeline<'scope, R: Read + Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    reader: R,
    compression: Compression,
) -> (ChannelReader, std::thread::ScopedJoinHandle<'scope, Sha256>) {
    let (data_tx, data_rx) = mpsc::sync_channel::<io::Result<Arc<[u8]>>>(PIPE_DEPTH);
    let (hash_tx, hash_rx) = mpsc::sync_channel::<Arc<[u8]>>(PIPE_DEPTH);
    std::thread::Builder::new()
        .name("farm-inflate".into())
        .spawn_scoped(scope, move || {
            let mut decoded = match decompress(reader, compression) {
                Ok(decoded) => decoded,
                Err(e) => {
                    let _ = data_tx.send(Err(e));
                    return;
                }
            };
            let mut buf = vec![0u8; PIPE_CHUNK];
            loop {
                match decoded.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        let chunk: Arc<[u8]> = Arc::from(&buf[..n]);
                        if hash_tx.send(chunk.clone()).is_err() || data_tx.send(Ok(chunk)).is_err()
                        {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = data_tx.send(Err(e));
                        return;
                    }
                }
            }
        })
        .expect("spawn the decompression thread");
    let hasher = std::thread::Builder::new()
        .name("farm-diffid".into())
        .spawn_scoped(scope, move || {
            let mut hasher = Sha256::new();
            for chunk in hash_rx {
                hasher.update(&chunk);
            }
            hasher
        })
        .expect("spawn the hashing thread");
    (
        ChannelReader {
            rx: data_rx,
            chunk: None,
        },
        hasher,
    )
}

/// The reading end of [`pipeline`].
pub(super) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Arc<[u8]>>>,
    /// The chunk being read and how much of it was read.
    chunk: Option<(Arc<[u8]>, usize)>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((chunk, at)) = &mut self.chunk {
                if *at < chunk.len() {
                    let n = buf.len().min(chunk.len() - *at);
                    buf[..n].copy_from_slice(&chunk[*at..*at + n]);
                    *at += n;
                    return Ok(n);
                }
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => self.chunk = Some((chunk, 0)),
                Ok(Err(e)) => return Err(e),
                // The decompression thread ended: the stream's end.
                Err(_) => return Ok(0),
            }
        }
    }
}

fn over_cap(cap: u64) -> io::Error {
    io::Error::other(format!("layer decompresses to more than {cap} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tee_hashes_and_counts_and_stops_at_cap() {
        let meter = Rc::new(Meter::default());
        let data = vec![7u8; 1000];
        let mut tee = Tee::new(&data[..], 600, meter.clone());
        let mut buf = [0u8; 500];
        assert_eq!(tee.read(&mut buf).unwrap(), 500);
        assert!(tee.read(&mut buf).is_err());
        assert!(meter.over_cap.get());

        let meter = Rc::new(Meter::default());
        let tee = Tee::new(&data[..], 1000, meter.clone());
        let hasher = tee.drain().unwrap();
        assert_eq!(meter.bytes.get(), 1000);
        assert_eq!(
            hex::encode(hasher.finalize()),
            hex::encode(Sha256::digest(&data))
        );
    }
}
