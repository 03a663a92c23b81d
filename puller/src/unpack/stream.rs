//! The uncompressed layer stream: decompression, the diff_id hasher and the byte cap.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use sha2::{Digest as _, Sha256};

use crate::image::Compression;

/// Largest zstd window accepted: 2^27 = 128 MiB (what Docker and containerd accept).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Wrap `reader` in the decoder `compression` names.
pub(super) fn decompress<'a, R: Read + 'a>(
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
    hasher: Sha256,
    cap: u64,
    meter: Rc<Meter>,
}

impl<R: Read> Tee<R> {
    pub(super) fn new(inner: R, cap: u64, meter: Rc<Meter>) -> Tee<R> {
        Tee {
            inner,
            hasher: Sha256::new(),
            cap,
            meter,
        }
    }

    /// Read what is left to EOF (through the hasher and the cap) and return the hasher.
    pub(super) fn drain(mut self) -> io::Result<Sha256> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(self.hasher),
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
        self.hasher.update(&buf[..n]);
        Ok(n)
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
