//! Apply one layer tar into an empty snapshot folder, safely: every path resolves inside
//! the folder (openat2 RESOLVE_IN_ROOT), caps are enforced while streaming, whiteouts
//! become what overlayfs reads. The only writer of image content.
//! OWNER: helper "unpack". Interface below is fixed; bodies are to be written.

mod dirs;
mod header;
mod root;
pub(crate) mod stream;
mod xattr;

use std::borrow::Cow;
use std::cell::Cell;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Digest;
use crate::image::Compression;

use dirs::DirTimes;
use header::{normalize, show, split, BadPath, Pax};
pub(crate) use root::remove_tree;
use root::{CopyError, Root};
use stream::{Meter, Tee};
use xattr::Verdict;

/// Image ids are stored shifted by this base: image uid/gid `x` is owned on disk by host id
/// `STORE_ID_BASE + x`, so nothing in the store belongs to a host user (a setuid-root binary
/// in an image is setuid to an unprivileged id on the host) and `security.capability` is
/// stored as a v3 capability whose rootid is `STORE_ID_BASE`, never effective on the host.
/// Containers see the image's own ids through idmapped mounts.
pub const STORE_ID_BASE: u32 = 1 << 31;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    #[error("cannot open snapshot folder {}: {source}", path.display())]
    Dest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the layer stream ({offset} uncompressed bytes in, after entry {after}): {source}; the blob is corrupt or truncated: delete it and pull again")]
    Stream {
        offset: u64,
        after: String,
        #[source]
        source: io::Error,
    },
    #[error("layer ends inside entry {path}: the blob is truncated; delete it and pull again")]
    Truncated { path: String },
    #[error("layer decompresses to more than {limit} bytes (limit from max_layer_bytes and max_entries); refused as a decompression bomb")]
    StreamTooLarge { limit: u64 },
    #[error("entry {path} takes the layer past {limit} bytes of file content (max_layer_bytes); refused")]
    LayerTooLarge { path: String, limit: u64 },
    #[error("entry {path} ({size} bytes) takes the image past its size budget; refused: raise the image size limit only for an image you trust")]
    ImageTooLarge { path: String, size: u64 },
    #[error("layer has more than {limit} entries (max_entries); refused at entry {path}")]
    TooManyEntries { path: String, limit: u64 },
    #[error(
        "entry path {path} is {len} bytes, over the limit of {limit} (max_path_bytes); refused"
    )]
    PathTooLong {
        path: String,
        len: usize,
        limit: usize,
    },
    #[error("folder {path} takes the folder paths this layer names past {limit} bytes; refused as hostile")]
    TooManyFolders { path: String, limit: usize },
    #[error("entry path {path} has more than {limit} components (max_depth); refused")]
    PathTooDeep { path: String, limit: usize },
    #[error("entry {path} refused: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("{kind} record {path} declares {size} bytes, over the limit of {limit} (max_pax_bytes); refused without reading it")]
    RecordTooLarge {
        path: String,
        kind: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("invalid header for entry {path}: {reason}; the layer is malformed")]
    InvalidHeader { path: String, reason: String },
    #[error("entry {path}: PAX size {pax} differs from the header size {header}; refused (parsers would disagree on this layer)")]
    SizeMismatch { path: String, header: u64, pax: u64 },
    #[error(
        "entry {path}: sparse files are not supported; rebuild the image without sparse files"
    )]
    Sparse { path: String },
    #[error("entry {path} has unsupported tar type {kind:?}; refused")]
    UnsupportedType { path: String, kind: char },
    #[error("entry {path} carries xattr {name}, which would rewrite overlayfs' view of the layers; refused")]
    ForbiddenXattr { path: String, name: String },
    #[error(
        "entry {path}: id {id} plus the store id base {id_base} does not fit a uid/gid; refused"
    )]
    IdOverflow { path: String, id: u64, id_base: u32 },
    #[error("hardlink {path} -> {target} refused: {reason}")]
    Hardlink {
        path: String,
        target: String,
        reason: String,
    },
    #[error("symlink {path} refused: {reason}")]
    Symlink { path: String, reason: &'static str },
    #[error("whiteout {path} refused: {reason}")]
    Whiteout { path: String, reason: &'static str },
    #[error("cannot {op} {path} in the snapshot: {source}")]
    Fs {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Caps enforced while streaming a layer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Apparent (uncompressed, declared) bytes of file content in one layer.
    pub max_layer_bytes: u64,
    /// Entries in one layer.
    pub max_entries: u64,
    /// Bytes of one entry path.
    pub max_path_bytes: usize,
    /// Components of one entry path.
    pub max_depth: usize,
    /// Bytes of one PAX extended header or GNU long name/link record.
    pub max_pax_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_layer_bytes: 64 << 30,
            max_entries: 1_000_000,
            max_path_bytes: 4096,
            max_depth: 256,
            max_pax_bytes: 1 << 20,
        }
    }
}

/// The apparent-byte budget of a whole image, shared by layers unpacked in parallel.
#[derive(Debug)]
pub struct ImageBudget {
    pub remaining: AtomicU64,
}

impl ImageBudget {
    pub fn new(max_image_bytes: u64) -> ImageBudget {
        ImageBudget {
            remaining: AtomicU64::new(max_image_bytes),
        }
    }
}

#[derive(Debug, Clone)]
pub struct UnpackOptions {
    pub compression: Compression,
    pub limits: Limits,
    /// Added to every uid and gid written ([`STORE_ID_BASE`] in the store; 0 in some tests).
    pub id_base: u32,
    /// Snapshot folders of the layers below, nearest first: hardlinks to a file of a lower
    /// layer are copied up from there.
    pub parents: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct UnpackReport {
    /// sha256 of exactly the uncompressed bytes read (the whole stream).
    pub diff_id: Digest,
    pub entries: u64,
    /// Apparent bytes of file content written.
    pub bytes: u64,
    /// Things neutralised rather than refused (a device node skipped, say), for the user.
    pub warnings: Vec<String>,
}

/// Apply the (compressed) layer stream `reader` into `dest`, an existing empty folder.
/// On error `dest` may hold partial content: the caller deletes it.
pub fn apply_layer(
    reader: impl Read,
    dest: &Path,
    options: &UnpackOptions,
    budget: &ImageBudget,
) -> Result<UnpackReport, UnpackError> {
    let charged = Cell::new(0);
    let hooks = StreamHooks::default();
    let decoded = stream::decompress(reader, options.compression);
    apply_decoded(
        decoded,
        Hashing::Here,
        dest,
        options,
        budget,
        &hooks,
        &charged,
    )
    .map(|(report, hasher)| report.with_diff_id(hasher))
}

/// What a caller of [`apply_layer_pipelined`] hooks into the unpack.
pub struct StreamHooks<'a> {
    /// Called when the unpack failed, before it waits for its reader thread: it must make
    /// a read blocked in `reader` return (a follower of a download is abandoned).
    pub abort: &'a (dyn Fn() + Sync),
    /// Called before a hardlink is copied up from `parents`: returns once every lower
    /// layer is committed (or failed), when lower layers are unpacked at the same time.
    pub lowers_ready: &'a (dyn Fn() + Sync),
}

impl Default for StreamHooks<'_> {
    fn default() -> Self {
        StreamHooks {
            abort: &|| {},
            lowers_ready: &|| {},
        }
    }
}

/// What [`apply_layer_pipelined`] reports besides the layer's report.
#[derive(Debug)]
pub struct Pipelined {
    pub result: Result<UnpackReport, UnpackError>,
    /// Apparent bytes charged to the image budget, to give back if the layer is unpacked
    /// again (its download started over).
    pub charged: u64,
}

/// [`apply_layer`] on three threads: decompression of `reader` on one, the diff ID's
/// sha256 on another, and the tar entries applied on the calling thread, joined by bounded
/// channels (a few 256 KiB buffers each: memory does not grow with the layer). Every
/// entry goes through exactly the same checks as [`apply_layer`].
pub fn apply_layer_pipelined(
    reader: impl Read + Send,
    dest: &Path,
    options: &UnpackOptions,
    budget: &ImageBudget,
    hooks: &StreamHooks<'_>,
) -> Pipelined {
    let charged = Cell::new(0);
    let result = std::thread::scope(|scope| {
        let (decoded, hasher) = stream::pipeline(scope, reader, options.compression);
        let result = apply_decoded(
            Ok(decoded),
            Hashing::Elsewhere,
            dest,
            options,
            budget,
            hooks,
            &charged,
        );
        if result.is_err() {
            (hooks.abort)();
        }
        let hasher = hasher
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        result.map(|(report, _)| report.with_diff_id(hasher))
    });
    Pipelined {
        result,
        charged: charged.get(),
    }
}

/// Where the diff ID's sha256 is computed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hashing {
    /// On the thread that applies the entries.
    Here,
    /// By the caller, on the bytes it decompressed.
    Elsewhere,
}

impl UnpackReport {
    fn with_diff_id(mut self, hasher: sha2::Sha256) -> UnpackReport {
        self.diff_id = Digest::from_hasher(hasher);
        self
    }
}

/// Apply the decompressed stream `decoded`. The report's diff ID is a placeholder: the
/// caller sets it from the returned hasher (`Hashing::Here`) or its own.
#[allow(clippy::too_many_arguments)] // one layer's parts: the two public fronts name them
fn apply_decoded(
    decoded: io::Result<impl Read>,
    hashing: Hashing,
    dest: &Path,
    options: &UnpackOptions,
    budget: &ImageBudget,
    hooks: &StreamHooks<'_>,
    charged: &Cell<u64>,
) -> Result<(UnpackReport, sha2::Sha256), UnpackError> {
    let limits = &options.limits;
    let cap = stream_cap(limits);
    let meter = Rc::new(Meter::default());
    let stream_error = |meter: &Meter, after: &str, source: io::Error| {
        if meter.over_cap.get() {
            UnpackError::StreamTooLarge { limit: cap }
        } else {
            UnpackError::Stream {
                offset: meter.bytes.get(),
                after: after.to_string(),
                source,
            }
        }
    };
    let root = Root::open(dest, options.id_base, limits.max_entries).map_err(|source| {
        UnpackError::Dest {
            path: dest.to_path_buf(),
            source,
        }
    })?;
    let decoded = decoded.map_err(|source| stream_error(&meter, "(none)", source))?;
    let tee = match hashing {
        Hashing::Here => Tee::new(decoded, cap, meter.clone()),
        Hashing::Elsewhere => Tee::counting(decoded, cap, meter.clone()),
    };
    let mut archive = tar::Archive::new(tee);
    let mut layer = Layer {
        root,
        options,
        budget,
        charged,
        lowers_ready: hooks.lowers_ready,
        meter: meter.clone(),
        cap,
        entries: 0,
        bytes: 0,
        warnings: Vec::new(),
        dirs: DirTimes::new(dirs::MAX_DIR_BYTES),
        pending: Pending::default(),
        last: b"(none)".to_vec(),
        buf: vec![0u8; root::COPY_BUF],
    };
    let entries = archive
        .entries()
        .map_err(|source| stream_error(&meter, "(none)", source))?
        .raw(true);
    for entry in entries {
        let entry = entry.map_err(|source| stream_error(&meter, &show(&layer.last), source))?;
        layer.entry(entry)?;
    }
    if layer.pending.records > 0 {
        return Err(UnpackError::Truncated {
            path: show(&layer.last),
        });
    }
    layer.finish_dirs()?;
    let hasher = archive
        .into_inner()
        .drain()
        .map_err(|source| stream_error(&meter, &show(&layer.last), source))?;
    let report = UnpackReport {
        diff_id: Digest::from_hasher(sha2::Sha256::default()),
        entries: layer.entries,
        bytes: layer.bytes,
        warnings: layer.warnings,
    };
    Ok((report, hasher))
}

/// Uncompressed bytes a layer may have: its file content plus, per entry, room for a
/// header, a PAX header and block padding, plus a few large records and the trailer.
fn stream_cap(limits: &Limits) -> u64 {
    limits
        .max_layer_bytes
        .saturating_add(limits.max_entries.saturating_mul(4 * 512))
        .saturating_add(limits.max_pax_bytes.saturating_mul(4))
        .saturating_add(1 << 20)
}

/// At most this many warnings are kept; the rest are counted in a last one.
const MAX_WARNINGS: usize = 100;
/// Extension records (PAX, GNU long name/link) allowed in front of one entry.
const MAX_RECORDS: u32 = 8;

/// Extension records read so far that describe the next entry.
#[derive(Default)]
struct Pending {
    pax: Option<Pax>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    records: u32,
}

/// What an entry is, once its tar type and name are read.
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    Device,
}

/// The state of one layer being applied.
struct Layer<'o> {
    root: Root,
    options: &'o UnpackOptions,
    budget: &'o ImageBudget,
    /// What this layer took from `budget` so far.
    charged: &'o Cell<u64>,
    lowers_ready: &'o (dyn Fn() + Sync),
    meter: Rc<Meter>,
    cap: u64,
    entries: u64,
    bytes: u64,
    warnings: Vec<String>,
    /// Folders made, with their mtimes, applied at the end.
    dirs: DirTimes,
    pending: Pending,
    /// The last entry path, for messages about the stream.
    last: Vec<u8>,
    buf: Vec<u8>,
}

/// The metadata of an entry, ids already shifted.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: (i64, u32),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The error for a parent folder that could not be resolved or made: over the inode budget
/// (entries and the folders made for them share max_entries) or a filesystem error.
fn parent_error(path: &[u8], limit: u64) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| {
        if root::is_exhausted(&source) {
            UnpackError::TooManyEntries {
                path: show(path),
                limit,
            }
        } else {
            fs_error("make the folder of", path)(source)
        }
    }
}

fn fs_error<'a>(op: &'static str, path: &'a [u8]) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Fs {
        op,
        path: show(path),
        source,
    }
}

impl Layer<'_> {
    fn warn(&mut self, warning: String) {
        match self.warnings.len() {
            n if n < MAX_WARNINGS => self.warnings.push(warning),
            MAX_WARNINGS => self.warnings.push("more warnings left out".to_string()),
            _ => {}
        }
    }

    fn read_error(&self, path: &[u8], source: io::Error) -> UnpackError {
        if self.meter.over_cap.get() {
            UnpackError::StreamTooLarge { limit: self.cap }
        } else if source.kind() == io::ErrorKind::UnexpectedEof {
            UnpackError::Truncated { path: show(path) }
        } else {
            UnpackError::Stream {
                offset: self.meter.bytes.get(),
                after: show(path),
                source,
            }
        }
    }

    /// Count `size` apparent bytes against the layer cap and the image budget.
    fn charge(&mut self, size: u64, path: &[u8]) -> Result<(), UnpackError> {
        let limit = self.options.limits.max_layer_bytes;
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > limit {
            return Err(UnpackError::LayerTooLarge {
                path: show(path),
                limit,
            });
        }
        self.budget
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(size)
            })
            .map_err(|_| UnpackError::ImageTooLarge {
                path: show(path),
                size,
            })?;
        self.charged.set(self.charged.get().saturating_add(size));
        Ok(())
    }

    fn shift(&self, id: u64, path: &[u8]) -> Result<u32, UnpackError> {
        let id_base = self.options.id_base;
        id.checked_add(u64::from(id_base))
            .and_then(|id| u32::try_from(id).ok())
            .filter(|id| *id != u32::MAX)
            .ok_or(UnpackError::IdOverflow {
                path: show(path),
                id,
                id_base,
            })
    }

    /// One raw tar record: an extension record is kept for the next entry, an entry applied.
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type().as_byte();
        let size = entry.size();
        if matches!(kind, b'x' | b'g' | b'L' | b'K') {
            return self.record(entry, kind, size);
        }
        let pending = std::mem::take(&mut self.pending);
        let pax = pending.pax.unwrap_or_default();
        let header = entry.header();
        let raw_path: Cow<'_, [u8]> = match (&pax.path, &pending.long_name) {
            (Some(path), _) | (None, Some(path)) => Cow::Borrowed(path),
            (None, None) => header.path_bytes(),
        };
        self.entries += 1;
        let limits = &self.options.limits;
        if self.entries > limits.max_entries || !self.root.spend_inode() {
            return Err(UnpackError::TooManyEntries {
                path: show(&raw_path),
                limit: limits.max_entries,
            });
        }
        let path =
            normalize(&raw_path, limits.max_path_bytes, limits.max_depth).map_err(|bad| {
                let path = show(&raw_path);
                match bad {
                    BadPath::TooLong(len) => UnpackError::PathTooLong {
                        path,
                        len,
                        limit: limits.max_path_bytes,
                    },
                    BadPath::TooDeep => UnpackError::PathTooDeep {
                        path,
                        limit: limits.max_depth,
                    },
                    BadPath::Invalid(reason) => UnpackError::InvalidPath { path, reason },
                }
            })?;
        self.last.clone_from(&path);

        if kind == b'S' || pax.sparse {
            let real = match header.as_gnu() {
                Some(gnu) if kind == b'S' => gnu.real_size().ok(),
                _ => pax.sparse_size,
            };
            if let Some(real) = real {
                self.charge(real, &path)?;
            }
            return Err(UnpackError::Sparse { path: show(&path) });
        }
        if let Some(pax_size) = pax.size.filter(|pax_size| *pax_size != size) {
            return Err(UnpackError::SizeMismatch {
                path: show(&path),
                header: size,
                pax: pax_size,
            });
        }
        let kind = match kind {
            b'0' | b'\0' | b'7' => Kind::File,
            b'5' => Kind::Dir,
            b'2' => Kind::Symlink,
            b'1' => Kind::Hardlink,
            b'6' => Kind::Fifo,
            b'3' | b'4' => Kind::Device,
            other => {
                return Err(UnpackError::UnsupportedType {
                    path: show(&path),
                    kind: other as char,
                })
            }
        };
        let invalid = |reason: io::Error| UnpackError::InvalidHeader {
            path: show(&path),
            reason: reason.to_string(),
        };
        let uid = match pax.uid {
            Some(uid) => uid,
            None => header.uid().map_err(invalid)?,
        };
        let gid = match pax.gid {
            Some(gid) => gid,
            None => header.gid().map_err(invalid)?,
        };
        let mtime = match pax.mtime {
            Some(mtime) => mtime,
            None => (
                i64::try_from(header.mtime().map_err(invalid)?).unwrap_or(i64::MAX),
                0,
            ),
        };
        let mode = header.mode().map_err(invalid)? & 0o7777;
        let link: Option<Vec<u8>> = match (pax.linkpath, pending.long_link) {
            (Some(link), _) | (None, Some(link)) => Some(link),
            (None, None) => header.link_name_bytes().map(Cow::into_owned),
        };
        let mut meta = Meta {
            uid: self.shift(uid, &path)?,
            gid: self.shift(gid, &path)?,
            mode,
            mtime,
            xattrs: Vec::new(),
        };
        // An empty value is a deleted key (see header::Pax::xattrs).
        for (name, value) in pax.xattrs.into_iter().filter(|(_, v)| !v.is_empty()) {
            match xattr::vet(&show(&path), &name, &value, self.options.id_base) {
                Verdict::Keep(value) => meta.xattrs.push((name, value)),
                Verdict::Drop(warning) => self.warn(warning),
                Verdict::Refuse => {
                    return Err(UnpackError::ForbiddenXattr {
                        path: show(&path),
                        name: show(&name),
                    })
                }
            }
        }

        let (_, name) = split(&path);
        if name.starts_with(b".wh.") {
            return self.whiteout(&path);
        }
        if path.is_empty() {
            return self.layer_root(kind, &meta);
        }
        match kind {
            Kind::File => self.file(&mut entry, &path, size, &meta),
            Kind::Dir => self.dir(&path, meta),
            Kind::Symlink => self.symlink(&path, link.as_deref(), &meta),
            Kind::Hardlink => {
                let result = self.hardlink(&path, link.as_deref());
                // It may have replaced a name the cached parent's path resolves through.
                self.root.invalidate();
                result
            }
            Kind::Fifo => self.fifo(&path, &meta),
            Kind::Device => {
                self.warn(format!(
                    "device node {} skipped: containers get their own /dev",
                    show(&path)
                ));
                Ok(())
            }
        }
    }

    /// A PAX (`x`, `g`) or GNU long name/link (`L`, `K`) record, refused from its header
    /// when larger than max_pax_bytes.
    fn record<R: Read>(
        &mut self,
        entry: tar::Entry<'_, R>,
        kind: u8,
        size: u64,
    ) -> Result<(), UnpackError> {
        let name = entry.header().path_bytes().into_owned();
        let what = match kind {
            b'x' => "PAX header",
            b'g' => "PAX global header",
            b'L' => "GNU long name",
            _ => "GNU long link",
        };
        let limit = self.options.limits.max_pax_bytes;
        if size > limit {
            return Err(UnpackError::RecordTooLarge {
                path: show(&name),
                kind: what,
                size,
                limit,
            });
        }
        self.pending.records += 1;
        if self.pending.records > MAX_RECORDS {
            return Err(UnpackError::InvalidHeader {
                path: show(&name),
                reason: format!("more than {MAX_RECORDS} extension records for one entry"),
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        entry
            .take(size)
            .read_to_end(&mut data)
            .map_err(|source| self.read_error(&name, source))?;
        if data.len() as u64 != size {
            return Err(UnpackError::Truncated { path: show(&name) });
        }
        match kind {
            b'x' => {
                let pax = self.pending.pax.get_or_insert_with(Pax::default);
                header::parse_pax(&data, pax).map_err(|reason| UnpackError::InvalidHeader {
                    path: show(&name),
                    reason,
                })?;
            }
            // Global records only carry defaults farm does not use; bounded above.
            b'g' => {}
            _ => {
                while data.last() == Some(&0) {
                    data.pop();
                }
                if kind == b'L' {
                    self.pending.long_name = Some(data);
                } else {
                    self.pending.long_link = Some(data);
                }
            }
        }
        Ok(())
    }

    fn xattrs(
        &self,
        fd: std::os::fd::BorrowedFd<'_>,
        path: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        for (name, value) in &meta.xattrs {
            root::set_xattr(fd, name, value).map_err(fs_error("set an xattr on", path))?;
        }
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &[u8],
        size: u64,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        self.charge(size, path)?;
        let (parent, name) = split(path);
        let parent = self
            .root
            .parent(parent)
            .map_err(parent_error(path, self.options.limits.max_entries))?;
        let (mut file, replaced) =
            root::create_file(parent, name).map_err(fs_error("create", path))?;
        if replaced {
            // What was replaced may have been a symlink or folder the cached parent's
            // path resolves through (`p` -> `q/k/..`, this entry `p/k`).
            self.root.invalidate();
        }
        match root::copy_exact(entry, &mut file, size, &mut self.buf) {
            Ok(true) => {}
            Ok(false) => return Err(UnpackError::Truncated { path: show(path) }),
            Err(CopyError::Read(source)) => return Err(self.read_error(path, source)),
            Err(CopyError::Write(source)) => return Err(fs_error("write", path)(source)),
        }
        root::own_fd(file.as_fd(), meta.uid, meta.gid, meta.mode)
            .map_err(fs_error("set the owner and mode of", path))?;
        self.xattrs(file.as_fd(), path, meta)?;
        rustix::fs::futimens(&file, &root::timestamps(meta.mtime))
            .map_err(|e| fs_error("set the mtime of", path)(e.into()))?;
        Ok(())
    }

    fn dir(&mut self, path: &[u8], meta: Meta) -> Result<(), UnpackError> {
        self.record_dir(path, meta.mtime)?;
        let (parent, name) = split(path);
        let parent = self
            .root
            .parent(parent)
            .map_err(parent_error(path, self.options.limits.max_entries))?;
        let dir = root::make_dir(parent, name).map_err(fs_error("make the folder", path))?;
        root::own_fd(dir.as_fd(), meta.uid, meta.gid, meta.mode)
            .map_err(fs_error("set the owner and mode of", path))?;
        self.xattrs(dir.as_fd(), path, &meta)?;
        self.root.invalidate();
        Ok(())
    }

    /// An entry naming the layer root itself (`./`): a folder updates the root's metadata.
    fn layer_root(&mut self, kind: Kind, meta: &Meta) -> Result<(), UnpackError> {
        if !matches!(kind, Kind::Dir) {
            return Err(UnpackError::InvalidPath {
                path: "/".into(),
                reason: "only a folder may name the layer root",
            });
        }
        let fd = self.root.fd();
        root::own_fd(fd, meta.uid, meta.gid, meta.mode)
            .map_err(fs_error("set the owner and mode of", b"/"))?;
        self.xattrs(fd, b"/", meta)?;
        self.record_dir(b"", meta.mtime)
    }

    fn symlink(
        &mut self,
        path: &[u8],
        target: Option<&[u8]>,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let target = match target {
            Some(target) if !target.is_empty() && !target.contains(&0) => target,
            _ => {
                return Err(UnpackError::Symlink {
                    path: show(path),
                    reason: "empty or invalid target",
                })
            }
        };
        self.root.invalidate();
        let (parent, name) = self.replace_at(path)?;
        // The target is stored as is: it is only data, every resolution is IN_ROOT.
        rustix::fs::symlinkat(root::os(target), parent, root::os(name))
            .map_err(|e| fs_error("make the symlink", path)(e.into()))?;
        root::chown_at(parent, name, meta.uid, meta.gid)
            .map_err(fs_error("set the owner of", path))?;
        root::times_at(parent, name, meta.mtime).map_err(fs_error("set the mtime of", path))?;
        self.root.invalidate();
        Ok(())
    }

    /// Resolve the parent of `path` inside the root and clear whatever stands at its name,
    /// so that a new entry can be made there: the parent's fd and the name.
    fn replace_at<'p>(
        &mut self,
        path: &'p [u8],
    ) -> Result<(std::os::fd::BorrowedFd<'_>, &'p [u8]), UnpackError> {
        let (parent, name) = split(path);
        let max_entries = self.options.limits.max_entries;
        let parent = self
            .root
            .parent(parent)
            .map_err(parent_error(path, max_entries))?;
        root::clear(parent, name).map_err(fs_error("replace", path))?;
        Ok((parent, name))
    }

    fn fifo(&mut self, path: &[u8], meta: &Meta) -> Result<(), UnpackError> {
        self.root.invalidate();
        let (parent, name) = self.replace_at(path)?;
        let mode = rustix::fs::Mode::from_raw_mode(meta.mode);
        rustix::fs::mknodat(parent, root::os(name), rustix::fs::FileType::Fifo, mode, 0)
            .map_err(|e| fs_error("make the fifo", path)(e.into()))?;
        root::chown_at(parent, name, meta.uid, meta.gid)
            .map_err(fs_error("set the owner of", path))?;
        rustix::fs::chmodat(parent, root::os(name), mode, rustix::fs::AtFlags::empty())
            .map_err(|e| fs_error("set the mode of", path)(e.into()))?;
        root::times_at(parent, name, meta.mtime).map_err(fs_error("set the mtime of", path))?;
        self.root.invalidate();
        Ok(())
    }

    fn hardlink(&mut self, path: &[u8], target: Option<&[u8]>) -> Result<(), UnpackError> {
        self.root.invalidate();
        let limits = &self.options.limits;
        let refuse = |target: &[u8], reason: String| UnpackError::Hardlink {
            path: show(path),
            target: show(target),
            reason,
        };
        let raw_target = target.unwrap_or_default();
        let target = normalize(raw_target, limits.max_path_bytes, limits.max_depth)
            .map_err(|bad| refuse(raw_target, format!("invalid target ({bad:?})")))?;
        if target.is_empty() {
            return Err(refuse(raw_target, "the target is the layer root".into()));
        }
        if target == path {
            return Ok(());
        }
        let (target_parent, target_name) = split(&target);
        let target_dir = match self.root.existing_dir(target_parent) {
            Ok(fd) => Some(fd),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => None,
            Err(e) => return Err(refuse(&target, e.to_string())),
        };
        let (parent, name) = self.replace_at(path)?;
        if let Some(target_dir) = target_dir {
            // linkat without AT_SYMLINK_FOLLOW links a final symlink itself, never its target.
            match rustix::fs::linkat(
                &target_dir,
                root::os(target_name),
                parent,
                root::os(name),
                rustix::fs::AtFlags::empty(),
            ) {
                Ok(()) => return Ok(()),
                Err(rustix::io::Errno::NOENT) => {}
                Err(e) => return Err(refuse(&target, io::Error::from(e).to_string())),
            }
        }
        self.copy_up(path, &target)
    }

    /// A hardlink to a file of a lower layer: copy that file into this layer.
    fn copy_up(&mut self, path: &[u8], target: &[u8]) -> Result<(), UnpackError> {
        let refuse = |reason: String| UnpackError::Hardlink {
            path: show(path),
            target: show(target),
            reason,
        };
        (self.lowers_ready)();
        let lower = root::find_lower(&self.options.parents, target)
            .map_err(|e| refuse(e.to_string()))?
            .ok_or_else(|| refuse("the target exists neither in this layer nor below".into()))?;
        let size = u64::try_from(lower.stat.st_size).unwrap_or(0);
        self.charge(size, path)?;
        let (parent, name) = split(path);
        let parent = self
            .root
            .parent(parent)
            .map_err(parent_error(path, self.options.limits.max_entries))?;
        let (mut file, _) = root::create_file(parent, name).map_err(fs_error("create", path))?;
        let source = std::fs::File::from(lower.fd);
        match root::copy_exact(&source, &mut file, size, &mut self.buf) {
            Ok(true) => {}
            Ok(false) => return Err(refuse("the lower file shrank while copying".into())),
            Err(CopyError::Read(e)) => return Err(refuse(e.to_string())),
            Err(CopyError::Write(e)) => return Err(fs_error("write", path)(e)),
        }
        root::own_fd(
            file.as_fd(),
            lower.stat.st_uid,
            lower.stat.st_gid,
            lower.stat.st_mode,
        )
        .map_err(fs_error("set the owner and mode of", path))?;
        root::copy_xattrs(source.as_fd(), file.as_fd())
            .map_err(fs_error("copy the xattrs of", path))?;
        let mtime = (
            lower.stat.st_mtime,
            u32::try_from(lower.stat.st_mtime_nsec).unwrap_or(0),
        );
        rustix::fs::futimens(&file, &root::timestamps(mtime))
            .map_err(|e| fs_error("set the mtime of", path)(e.into()))?;
        Ok(())
    }

    /// `.wh.NAME` hides NAME of the layers below; `.wh..wh..opq` makes its folder opaque.
    fn whiteout(&mut self, path: &[u8]) -> Result<(), UnpackError> {
        self.root.invalidate();
        let (parent_path, name) = split(path);
        let id_base = self.options.id_base;
        if name == b".wh..wh..opq" {
            let parent = self
                .root
                .parent(parent_path)
                .map_err(parent_error(path, self.options.limits.max_entries))?;
            let dir = rustix::fs::openat(
                parent,
                ".",
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| fs_error("open the folder of", path)(e.into()))?;
            root::set_xattr(dir.as_fd(), b"trusted.overlay.opaque", b"y")
                .map_err(fs_error("mark opaque the folder of", path))?;
            return Ok(());
        }
        if name.starts_with(b".wh..wh.") {
            // aufs metadata (.wh..wh.plnk, .wh..wh.aufs): nothing to do, as docker.
            return Ok(());
        }
        let hidden = &name[4..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
            return Err(UnpackError::Whiteout {
                path: show(path),
                reason: "it names no file",
            });
        }
        let parent = self
            .root
            .parent(parent_path)
            .map_err(parent_error(path, self.options.limits.max_entries))?;
        root::whiteout(parent, hidden, id_base).map_err(fs_error("make the whiteout", path))?;
        self.root.invalidate();
        Ok(())
    }

    fn record_dir(&mut self, path: &[u8], mtime: (i64, u32)) -> Result<(), UnpackError> {
        if self.dirs.record(path, mtime) {
            return Ok(());
        }
        Err(UnpackError::TooManyFolders {
            path: show(path),
            limit: dirs::MAX_DIR_BYTES,
        })
    }

    /// Folder mtimes, once every entry is made (making entries inside a folder changes
    /// its mtime).
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        for (path, mtime) in self.dirs.iter() {
            match root::dir_times(self.root.fd(), path, mtime) {
                Ok(()) => {}
                // Replaced or removed by a later entry: nothing to set.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
                    ) => {}
                Err(e) => return Err(fs_error("set the mtime of", path)(e)),
            }
        }
        Ok(())
    }
}
