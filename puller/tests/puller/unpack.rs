//! `unpack::apply_layer` driven through the public API with hand-made (often hostile) tars.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use farm_puller::image::Compression;
use farm_puller::unpack::{
    apply_layer, ImageBudget, Limits, UnpackError, UnpackOptions, UnpackReport,
};
use sha2::{Digest as _, Sha256};

// ---------------------------------------------------------------------------------------
// A raw tar writer: it writes whatever it is told, names the `tar` crate would refuse too.

#[derive(Default)]
struct Tar {
    bytes: Vec<u8>,
}

fn octal(field: &mut [u8], value: u64) {
    let s = format!("{:0width$o}", value, width = field.len() - 1);
    assert!(s.len() < field.len(), "value too big for an octal field");
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[s.len()] = 0;
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body_len;
    while len.to_string().len() + body_len != len {
        len = len.to_string().len() + body_len;
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

impl Tar {
    /// A header block; `patch` may change it before the checksum is computed.
    fn header_with(
        &mut self,
        name: &[u8],
        kind: u8,
        size: u64,
        mode: u32,
        link: &[u8],
        patch: impl FnOnce(&mut [u8; 512]),
    ) {
        let mut block = [0u8; 512];
        let n = name.len().min(100);
        block[..n].copy_from_slice(&name[..n]);
        octal(&mut block[100..108], u64::from(mode));
        octal(&mut block[108..116], 0);
        octal(&mut block[116..124], 0);
        if size < (1 << 33) {
            octal(&mut block[124..136], size);
        } else {
            block[124] = 0x80;
            block[128..136].copy_from_slice(&size.to_be_bytes());
        }
        octal(&mut block[136..148], 1_700_000_000);
        block[156] = kind;
        let l = link.len().min(100);
        block[157..157 + l].copy_from_slice(&link[..l]);
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        patch(&mut block);
        block[148..156].copy_from_slice(b"        ");
        let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
        octal(&mut block[148..155], u64::from(sum));
        block[155] = b' ';
        self.bytes.extend_from_slice(&block);
    }

    fn header(&mut self, name: &[u8], kind: u8, size: u64, mode: u32, link: &[u8]) {
        self.header_with(name, kind, size, mode, link, |_| {});
    }

    fn data(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }

    fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Tar {
        self.header(name.as_bytes(), b'0', data.len() as u64, mode, b"");
        self.data(data);
        self
    }

    fn file_owned(&mut self, name: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> &mut Tar {
        self.header_with(name.as_bytes(), b'0', data.len() as u64, mode, b"", |b| {
            octal(&mut b[108..116], uid);
            octal(&mut b[116..124], gid);
        });
        self.data(data);
        self
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Tar {
        self.header(name.as_bytes(), b'5', 0, mode, b"");
        self
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.header(name.as_bytes(), b'2', 0, 0o777, target.as_bytes());
        self
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.header(name.as_bytes(), b'1', 0, 0o644, target.as_bytes());
        self
    }

    fn special(&mut self, name: &str, kind: u8, mode: u32) -> &mut Tar {
        self.header(name.as_bytes(), kind, 0, mode, b"");
        self
    }

    /// A PAX local header with these records, for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.header(b"PaxHeaders/x", b'x', data.len() as u64, 0o644, b"");
        self.data(&data);
        self
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut self.bytes);
        bytes.extend_from_slice(&[0u8; 1024]);
        bytes
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

// ---------------------------------------------------------------------------------------
// Applying layers, and proving nothing was written outside `dest`.

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test (or run) uses, for host paths a hostile tar aims at.
fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

fn options(compression: Compression, id_base: u32) -> UnpackOptions {
    UnpackOptions {
        compression,
        limits: Limits::default(),
        id_base,
        parents: Vec::new(),
    }
}

/// A temp folder holding `dest` (empty) and `sentinel/` (a file and a folder to attack).
struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("dest")).unwrap();
        std::fs::create_dir_all(tmp.path().join("sentinel/inner")).unwrap();
        std::fs::write(tmp.path().join("sentinel/secret"), b"keep me").unwrap();
        std::fs::write(tmp.path().join("outside"), b"outside").unwrap();
        Sandbox { tmp }
    }

    fn dest(&self) -> PathBuf {
        self.tmp.path().join("dest")
    }

    fn layer(&self, name: &str) -> PathBuf {
        let path = self.tmp.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Everything under the temp folder except the snapshot folders, with what identifies it.
    fn listing(&self) -> BTreeMap<PathBuf, (u32, u64, u64, Vec<u8>)> {
        let mut out = BTreeMap::new();
        walk(self.tmp.path(), self.tmp.path(), &mut out);
        out
    }

    /// Apply `tar` into `dest` and check that nothing outside `dest` changed, and that
    /// none of the `host_paths` appeared.
    fn apply_contained(
        &self,
        tar: &[u8],
        options: &UnpackOptions,
        host_paths: &[&Path],
    ) -> Result<UnpackReport, UnpackError> {
        let before = self.listing();
        let result = apply_layer(tar, &self.dest(), options, &ImageBudget::new(u64::MAX));
        assert_eq!(before, self.listing(), "something changed outside dest");
        for path in host_paths {
            assert!(
                std::fs::symlink_metadata(path).is_err(),
                "{} was created",
                path.display()
            );
        }
        result
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u32, u64, u64, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        if rel == Path::new("dest") || rel.starts_with("l1") || rel.starts_with("l2") {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let content = if meta.is_file() {
            std::fs::read(&path).unwrap()
        } else {
            Vec::new()
        };
        out.insert(rel, (meta.mode(), meta.nlink(), meta.size(), content));
        if meta.is_dir() {
            walk(root, &path, out);
        }
    }
}

fn apply(tar: &[u8], dest: &Path, options: &UnpackOptions) -> UnpackReport {
    apply_layer(tar, dest, options, &ImageBudget::new(u64::MAX)).unwrap()
}

// ---------------------------------------------------------------------------------------
// Layer semantics through a real overlay mount.

#[derive(Debug, PartialEq, Eq)]
enum Node {
    File { mode: u32, content: Vec<u8> },
    Dir { mode: u32 },
    Symlink { target: PathBuf },
    Fifo,
}

fn tree(root: &Path) -> BTreeMap<String, Node> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.is_dir() {
                go(root, &path, out);
                Node::Dir { mode }
            } else if meta.file_type().is_symlink() {
                Node::Symlink {
                    target: std::fs::read_link(&path).unwrap(),
                }
            } else if meta.file_type().is_fifo() {
                Node::Fifo
            } else {
                Node::File {
                    mode,
                    content: std::fs::read(&path).unwrap(),
                }
            };
            out.insert(rel, node);
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn layers_merge_through_overlayfs_as_docker_would() {
    let sandbox = Sandbox::new();
    let (l1, l2, merged) = (
        sandbox.layer("l1"),
        sandbox.layer("l2"),
        sandbox.layer("l2merged"),
    );
    let id_base = 100_000;

    let layer1 = Tar::default()
        .dir("./", 0o755)
        .dir("bin", 0o755)
        .file_owned("bin/su", b"su v1", 0o4755, 0, 0)
        .file_owned("home/user/notes", b"mine", 0o640, 1000, 1000)
        .file("etc/gone", b"old", 0o644)
        .dir("opq", 0o755)
        .file("opq/lower", b"hidden later", 0o644)
        .file("lib/libc.so.6", b"libc", 0o755)
        .hardlink("lib/libc-link", "lib/libc.so.6")
        .symlink("lib64", "/lib")
        .special("run/fifo", b'6', 0o600)
        .file("etc/replaced", b"file in l1", 0o644)
        .finish();
    let report1 = apply(&layer1, &l1, &options(Compression::None, id_base));
    assert_eq!(report1.entries, 12);

    let mut opts2 = options(Compression::Gzip, id_base);
    opts2.parents = vec![l1.clone()];
    let layer2 = gzip(
        &Tar::default()
            .file("etc/.wh.gone", b"", 0o644)
            .file("opq/.wh..wh..opq", b"", 0o644)
            .file("opq/upper", b"new", 0o600)
            .file("bin/su", b"su v2", 0o4755)
            .hardlink("bin/libc-copy", "lib/libc.so.6")
            .dir("etc/replaced", 0o700)
            .symlink("usr/bin/sh", "../../bin/su")
            .finish(),
    );
    apply(&layer2, &l2, &opts2);

    // On disk: ids shifted, setuid kept, hardlinks share an inode, whiteouts are 0:0.
    let su = std::fs::metadata(l1.join("bin/su")).unwrap();
    assert_eq!(
        (su.uid(), su.gid(), su.mode() & 0o7777),
        (id_base, id_base, 0o4755)
    );
    let notes = std::fs::metadata(l1.join("home/user/notes")).unwrap();
    assert_eq!((notes.uid(), notes.gid()), (id_base + 1000, id_base + 1000));
    let implicit = std::fs::metadata(l1.join("home")).unwrap();
    assert_eq!((implicit.uid(), implicit.mode() & 0o7777), (id_base, 0o755));
    let libc = std::fs::metadata(l1.join("lib/libc.so.6")).unwrap();
    assert_eq!(
        libc.ino(),
        std::fs::metadata(l1.join("lib/libc-link")).unwrap().ino()
    );
    let whiteout = std::fs::symlink_metadata(l2.join("etc/gone")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert_eq!(
        std::fs::metadata(l1.join("bin")).unwrap().mtime(),
        1_700_000_000
    );

    let status = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={}:{}", l2.display(), l1.display()))
        .arg(&merged)
        .status()
        .unwrap();
    assert!(status.success(), "mount -t overlay failed");
    let _mount = Mount(merged.clone());

    let file = |mode: u32, content: &[u8]| Node::File {
        mode,
        content: content.to_vec(),
    };
    let dir = |mode: u32| Node::Dir { mode };
    let expected: BTreeMap<String, Node> = [
        ("bin", dir(0o755)),
        ("bin/su", file(0o4755, b"su v2")),
        ("bin/libc-copy", file(0o755, b"libc")),
        ("etc", dir(0o755)),
        ("etc/replaced", dir(0o700)),
        ("home", dir(0o755)),
        ("home/user", dir(0o755)),
        ("home/user/notes", file(0o640, b"mine")),
        ("lib", dir(0o755)),
        ("lib/libc.so.6", file(0o755, b"libc")),
        ("lib/libc-link", file(0o755, b"libc")),
        (
            "lib64",
            Node::Symlink {
                target: "/lib".into(),
            },
        ),
        ("opq", dir(0o755)),
        ("opq/upper", file(0o600, b"new")),
        ("run", dir(0o755)),
        ("run/fifo", Node::Fifo),
        ("usr", dir(0o755)),
        ("usr/bin", dir(0o755)),
        (
            "usr/bin/sh",
            Node::Symlink {
                target: "../../bin/su".into(),
            },
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(tree(&merged), expected);
    let a = std::fs::metadata(merged.join("lib/libc.so.6")).unwrap();
    let b = std::fs::metadata(merged.join("lib/libc-link")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlinks of one layer share an inode");
}

// ---------------------------------------------------------------------------------------
// Hostile layers: each refused or contained, nothing outside `dest` touched.

#[test]
fn dotdot_traversal_is_refused() {
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .file("a/../../outside", b"pwned", 0o644)
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::InvalidPath { .. }), "{err}");
    assert!(err.to_string().contains("a/../../outside"), "{err}");
}

#[test]
fn absolute_path_lands_inside_dest() {
    let sandbox = Sandbox::new();
    let name = unique("farm-escape");
    let host = PathBuf::from("/tmp").join(&name);
    let tar = Tar::default()
        .file(&format!("/tmp/{name}"), b"x", 0o644)
        .finish();
    sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[&host])
        .unwrap();
    assert_eq!(
        std::fs::read(sandbox.dest().join("tmp").join(&name)).unwrap(),
        b"x"
    );
}

#[test]
fn absolute_symlink_then_file_stays_inside() {
    let sandbox = Sandbox::new();
    let name = unique("farm-escape");
    let host = PathBuf::from("/tmp").join(&name);
    let tar = Tar::default()
        .dir("tmp", 0o755)
        .symlink("a", "/tmp")
        .file(&format!("a/{name}"), b"x", 0o644)
        .finish();
    sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[&host])
        .unwrap();
    assert_eq!(
        std::fs::read(sandbox.dest().join("tmp").join(&name)).unwrap(),
        b"x"
    );

    // Without a tmp folder in the layer the symlink dangles inside dest: refused, contained.
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .symlink("a", "/tmp")
        .file(&format!("a/{name}"), b"x", 0o644)
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[&host])
        .unwrap_err();
    assert!(matches!(err, UnpackError::Fs { .. }), "{err}");
}

#[test]
fn relative_symlink_up_and_out_stays_inside() {
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .symlink("a", "../../../..")
        .file("a/outside", b"x", 0o644)
        .file("a/sentinel/secret", b"overwritten", 0o644)
        .finish();
    sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap();
    assert_eq!(std::fs::read(sandbox.dest().join("outside")).unwrap(), b"x");
    assert_eq!(
        std::fs::read(sandbox.dest().join("sentinel/secret")).unwrap(),
        b"overwritten"
    );
}

#[test]
fn symlink_chain_through_two_layers_stays_inside() {
    let sandbox = Sandbox::new();
    let l1 = sandbox.layer("l1");
    let name = unique("farm-escape");
    let host_file = PathBuf::from("/tmp").join(&name);
    std::fs::write(&host_file, b"host secret").unwrap();
    let layer1 = Tar::default()
        .symlink("a", "/tmp")
        .symlink("b", "../../../../tmp")
        .finish();
    apply(&layer1, &l1, &options(Compression::None, 0));

    let mut opts = options(Compression::None, 0);
    opts.parents = vec![l1.clone()];
    let other = unique("farm-escape");
    let layer2 = Tar::default()
        .file(&format!("a/{other}"), b"x", 0o644)
        .finish();
    let host_other = PathBuf::from("/tmp").join(&other);
    sandbox
        .apply_contained(&layer2, &opts, &[&host_other])
        .unwrap();
    assert!(sandbox.dest().join("a").join(&other).is_file());

    // A hardlink through the lower symlink must not copy the host file in.
    let sandbox2 = Sandbox::new();
    let layer2 = Tar::default()
        .hardlink("stolen", &format!("b/{name}"))
        .finish();
    let err = sandbox2.apply_contained(&layer2, &opts, &[]).unwrap_err();
    std::fs::remove_file(&host_file).unwrap();
    assert!(matches!(err, UnpackError::Hardlink { .. }), "{err}");
    assert!(!sandbox2.dest().join("stolen").exists());
}

#[test]
fn hardlink_to_host_etc_passwd_is_refused() {
    let sandbox = Sandbox::new();
    let before = std::fs::metadata("/etc/passwd").unwrap().nlink();
    let tar = Tar::default().hardlink("passwd", "/etc/passwd").finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::Hardlink { .. }), "{err}");
    assert!(err.to_string().contains("etc/passwd"), "{err}");
    assert_eq!(std::fs::metadata("/etc/passwd").unwrap().nlink(), before);
}

#[test]
fn hardlink_to_dotdot_outside_is_refused() {
    let sandbox = Sandbox::new();
    let tar = Tar::default().hardlink("link", "../outside").finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::Hardlink { .. }), "{err}");
}

#[test]
fn hardlink_through_symlinked_dir_is_refused() {
    let sandbox = Sandbox::new();
    let sentinel = sandbox.tmp.path().join("sentinel");
    let tar = Tar::default()
        .symlink("d", sentinel.to_str().unwrap())
        .symlink("e", "../sentinel")
        .hardlink("h1", "d/secret")
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::Hardlink { .. }), "{err}");
    let tar = Tar::default()
        .symlink("e", "../sentinel")
        .hardlink("h2", "e/secret")
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::Hardlink { .. }), "{err}");
}

#[test]
fn whiteout_through_symlinked_dir_does_not_delete_outside() {
    let sandbox = Sandbox::new();
    let sentinel = sandbox.tmp.path().join("sentinel");
    // The symlinks resolve inside dest, where their targets do not exist: refused, and
    // in any case nothing outside is removed.
    for (link, whiteout) in [
        (sentinel.to_str().unwrap(), "d/.wh.secret"),
        ("../sentinel", "d/.wh.inner"),
        ("../sentinel", "d/.wh..wh..opq"),
    ] {
        let tar = Tar::default()
            .symlink("d", link)
            .file(whiteout, b"", 0o644)
            .finish();
        let result = sandbox.apply_contained(&tar, &options(Compression::None, 0), &[]);
        assert!(matches!(result, Err(UnpackError::Fs { .. })), "{result:?}");
        assert!(sentinel.join("secret").is_file());
        assert!(sentinel.join("inner").is_dir());
    }
    // Where the target exists inside dest, the whiteout lands there.
    let tar = Tar::default()
        .dir(sentinel.to_str().unwrap(), 0o755)
        .file(&format!("{}/secret", sentinel.display()), b"inside", 0o644)
        .symlink("d", sentinel.to_str().unwrap())
        .file("d/.wh.secret", b"", 0o644)
        .finish();
    sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap();
    let inside = sandbox
        .dest()
        .join(sentinel.strip_prefix("/").unwrap())
        .join("secret");
    assert!(std::fs::symlink_metadata(inside)
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(std::fs::read(sentinel.join("secret")).unwrap(), b"keep me");
}

#[test]
fn whiteout_of_dotdot_is_refused() {
    let sandbox = Sandbox::new();
    let tar = Tar::default().file("x/.wh...", b"", 0o644).finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::Whiteout { .. }), "{err}");
}

#[test]
fn overlay_xattrs_from_the_image_are_refused() {
    for name in [
        "SCHILY.xattr.trusted.overlay.opaque",
        "SCHILY.xattr.user.overlay.redirect",
    ] {
        let sandbox = Sandbox::new();
        let tar = Tar::default().pax(&[(name, b"y")]).dir("d", 0o755).finish();
        let err = sandbox
            .apply_contained(&tar, &options(Compression::None, 0), &[])
            .unwrap_err();
        assert!(matches!(err, UnpackError::ForbiddenXattr { .. }), "{err}");
        assert!(err.to_string().contains("overlay"), "{err}");
    }
}

#[test]
fn device_nodes_are_skipped_with_a_warning() {
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .special("dev/sda", b'4', 0o660)
        .special("dev/mem", b'3', 0o600)
        .finish();
    let report = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap();
    assert!(!sandbox.dest().join("dev/sda").exists());
    assert!(!sandbox.dest().join("dev/mem").exists());
    assert_eq!(report.warnings.len(), 2);
    assert!(
        report.warnings[0].contains("device node dev/sda skipped"),
        "{:?}",
        report.warnings
    );
}

#[test]
fn gzip_bomb_of_zeros_is_stopped_quickly() {
    // 1 GiB of zeros as 1024 gzip members of 1 MiB each (multi-member, like pigz output).
    let member = gzip(&vec![0u8; 1 << 20]);
    let mut bomb = gzip(&Tar::default().file("small", b"x", 0o644).finish());
    for _ in 0..1024 {
        bomb.extend_from_slice(&member);
    }
    let sandbox = Sandbox::new();
    let mut opts = options(Compression::Gzip, 0);
    opts.limits = Limits {
        max_layer_bytes: 1 << 20,
        max_entries: 100,
        ..Limits::default()
    };
    let started = Instant::now();
    let err = sandbox.apply_contained(&bomb, &opts, &[]).unwrap_err();
    assert!(matches!(err, UnpackError::StreamTooLarge { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    // A file declaring more than the layer cap is refused from its header.
    let mut tar = Tar::default();
    tar.header(b"big", b'0', 1 << 30, 0o644, b"");
    let tar = gzip(&tar.finish());
    let err = sandbox.apply_contained(&tar, &opts, &[]).unwrap_err();
    assert!(matches!(err, UnpackError::LayerTooLarge { .. }), "{err}");
}

#[test]
fn gnu_sparse_file_of_one_tib_is_refused() {
    let sparse = |tar: &mut Tar| {
        tar.header_with(b"huge", b'S', 0, 0o644, b"", |b| {
            b[257..265].copy_from_slice(b"ustar  \0");
            b[483] = 0x80; // realsize, base-256: 1 TiB
            b[487..495].copy_from_slice(&(1u64 << 40).to_be_bytes());
        });
    };
    let sandbox = Sandbox::new();
    let mut tar = Tar::default();
    sparse(&mut tar);
    let tar = tar.finish();
    let mut opts = options(Compression::None, 0);
    opts.limits.max_layer_bytes = 1 << 30;
    let err = sandbox.apply_contained(&tar, &opts, &[]).unwrap_err();
    assert!(
        matches!(err, UnpackError::LayerTooLarge { limit, .. } if limit == 1 << 30),
        "{err}"
    );

    let mut opts = options(Compression::None, 0);
    opts.limits.max_layer_bytes = u64::MAX;
    let err = sandbox.apply_contained(&tar, &opts, &[]).unwrap_err();
    assert!(matches!(err, UnpackError::Sparse { .. }), "{err}");
    assert!(
        err.to_string().contains("sparse files are not supported"),
        "{err}"
    );

    // PAX sparse (GNU.sparse.*) is refused too.
    let tar = Tar::default()
        .pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.realsize", b"1099511627776"),
        ])
        .file("GNUSparseFile.0/huge", b"", 0o644)
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::LayerTooLarge { .. }), "{err}");
    let tar = Tar::default()
        .pax(&[("GNU.sparse.major", b"1"), ("GNU.sparse.realsize", b"4096")])
        .file("GNUSparseFile.0/small", b"", 0o644)
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::Sparse { .. }), "{err}");
}

#[test]
fn path_two_thousand_deep_is_refused_by_depth_quickly() {
    let sandbox = Sandbox::new();
    let deep = "a/".repeat(2000) + "f";
    let tar = Tar::default()
        .pax(&[("path", deep.as_bytes())])
        .file("short", b"x", 0o644)
        .finish();
    let mut opts = options(Compression::None, 0);
    opts.limits.max_path_bytes = 1 << 16;
    let started = Instant::now();
    let err = sandbox.apply_contained(&tar, &opts, &[]).unwrap_err();
    assert!(
        matches!(err, UnpackError::PathTooDeep { limit: 256, .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        err.to_string().len() < 1000,
        "message not shortened: {}",
        err.to_string().len()
    );
    assert!(
        std::fs::read_dir(sandbox.dest()).unwrap().next().is_none(),
        "nothing created"
    );

    let long = "a/".repeat(2100);
    let tar = Tar::default()
        .pax(&[("path", long.as_bytes())])
        .file("short", b"x", 0o644)
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::PathTooLong {
                len: 4200,
                limit: 4096,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn pax_record_of_256_mib_is_refused_from_its_header() {
    let sandbox = Sandbox::new();
    // Only the header: had the unpacker tried to read the record it would report truncation.
    let mut tar = Tar::default();
    tar.header(b"PaxHeaders/huge", b'x', 256 << 20, 0o644, b"");
    let err = sandbox
        .apply_contained(&tar.bytes, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(
        matches!(err, UnpackError::RecordTooLarge { size, .. } if size == 256 << 20),
        "{err}"
    );
    let mut tar = Tar::default();
    tar.header(b"././@LongLink", b'L', 256 << 20, 0o644, b"");
    let err = sandbox
        .apply_contained(&tar.bytes, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::RecordTooLarge { .. }), "{err}");
}

#[test]
fn too_many_entries_are_refused() {
    let sandbox = Sandbox::new();
    let mut tar = Tar::default();
    for i in 0..11 {
        tar.file(&format!("f{i}"), b"", 0o644);
    }
    let tar = tar.finish();
    let mut opts = options(Compression::None, 0);
    opts.limits.max_entries = 10;
    let err = sandbox.apply_contained(&tar, &opts, &[]).unwrap_err();
    assert!(
        matches!(err, UnpackError::TooManyEntries { limit: 10, .. }),
        "{err}"
    );
}

#[test]
fn truncated_stream_is_refused() {
    let tar = Tar::default()
        .file("a", &[1u8; 5000], 0o644)
        .file("b", b"bb", 0o644)
        .finish();
    for cut in [700, 512 * 3 + 100] {
        let sandbox = Sandbox::new();
        let err = sandbox
            .apply_contained(&tar[..cut], &options(Compression::None, 0), &[])
            .unwrap_err();
        assert!(
            matches!(
                err,
                UnpackError::Truncated { .. } | UnpackError::Stream { .. }
            ),
            "{err}"
        );
    }
    let sandbox = Sandbox::new();
    let err = sandbox
        .apply_contained(&tar[..700], &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(
        matches!(err, UnpackError::Truncated { ref path } if path == "a"),
        "{err}"
    );
    // A gzip stream cut short is refused too.
    let gz = gzip(&tar);
    let sandbox = Sandbox::new();
    let err = sandbox
        .apply_contained(&gz[..gz.len() - 20], &options(Compression::Gzip, 0), &[])
        .unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::Truncated { .. } | UnpackError::Stream { .. }
        ),
        "{err}"
    );
}

#[test]
fn pax_size_disagreeing_with_header_is_refused() {
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .pax(&[("size", b"3")])
        .file("f", b"12345", 0o644)
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::SizeMismatch {
                header: 5,
                pax: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn image_budget_is_shared_across_layers() {
    let sandbox = Sandbox::new();
    let budget = ImageBudget::new(10);
    let tar = Tar::default().file("a", b"123456", 0o644).finish();
    apply_layer(
        &tar[..],
        &sandbox.layer("x1"),
        &options(Compression::None, 0),
        &budget,
    )
    .unwrap();
    let err = apply_layer(
        &tar[..],
        &sandbox.layer("x2"),
        &options(Compression::None, 0),
        &budget,
    )
    .unwrap_err();
    assert!(matches!(err, UnpackError::ImageTooLarge { .. }), "{err}");
}

#[test]
fn zstd_layer_unpacks_and_oversized_window_is_refused() {
    let tar = Tar::default().file("hello", b"zstd world", 0o644).finish();
    let sandbox = Sandbox::new();
    let compressed = zstd::encode_all(&tar[..], 3).unwrap();
    let report = apply(&compressed, &sandbox.dest(), &options(Compression::Zstd, 0));
    assert_eq!(
        std::fs::read(sandbox.dest().join("hello")).unwrap(),
        b"zstd world"
    );
    assert_eq!(report.diff_id.hex(), hex::encode(Sha256::digest(&tar)));

    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    encoder.long_distance_matching(true).unwrap();
    encoder.window_log(31).unwrap();
    encoder.include_contentsize(false).unwrap();
    encoder.write_all(&tar).unwrap();
    let wide = encoder.finish().unwrap();
    let sandbox = Sandbox::new();
    let err = sandbox
        .apply_contained(&wide, &options(Compression::Zstd, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::Stream { .. }), "{err}");
    assert!(!sandbox.dest().join("hello").exists());
}

#[test]
fn multi_member_gzip_is_read_fully() {
    let sandbox = Sandbox::new();
    let first = Tar::default().file("one", b"1", 0o644).bytes.clone();
    let second = Tar::default().file("two", b"2", 0o644).finish();
    let mut layer = gzip(&first);
    layer.extend_from_slice(&gzip(&second));
    let report = apply(&layer, &sandbox.dest(), &options(Compression::Gzip, 0));
    assert_eq!(report.entries, 2);
    assert_eq!(std::fs::read(sandbox.dest().join("two")).unwrap(), b"2");
}

#[test]
fn capability_v2_is_stored_as_v3_with_rootid_id_base() {
    let sandbox = Sandbox::new();
    let mut v2 = 0x0200_0001u32.to_le_bytes().to_vec();
    v2.extend_from_slice(&[0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // cap_net_raw
    let id_base = 200_000;
    let tar = Tar::default()
        .pax(&[
            ("SCHILY.xattr.security.capability", &v2),
            ("SCHILY.xattr.user.note", b"hi"),
        ])
        .file("bin/ping", b"ping", 0o755)
        .pax(&[("SCHILY.xattr.security.selinux", b"system_u:object_r:bin_t")])
        .file("bin/ls", b"ls", 0o755)
        .finish();
    let report = apply(&tar, &sandbox.dest(), &options(Compression::None, id_base));
    let ping = sandbox.dest().join("bin/ping");
    let cap = xattr_of(&ping, "security.capability").expect("capability kept");
    assert_eq!(cap.len(), 24);
    assert_eq!(&cap[..4], &0x0300_0001u32.to_le_bytes());
    assert_eq!(&cap[4..20], &v2[4..20]);
    assert_eq!(&cap[20..], &id_base.to_le_bytes());
    assert_eq!(xattr_of(&ping, "user.note").as_deref(), Some(&b"hi"[..]));
    assert!(xattr_of(&sandbox.dest().join("bin/ls"), "security.selinux").is_none());
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);

    // Without an id shift the capability would be effective for host root: dropped.
    let sandbox = Sandbox::new();
    let report = apply(&tar, &sandbox.dest(), &options(Compression::None, 0));
    assert!(xattr_of(&sandbox.dest().join("bin/ping"), "security.capability").is_none());
    assert!(report
        .warnings
        .iter()
        .any(|w| w.contains("security.capability")));
}

fn xattr_of(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn fifo_is_created_as_fifo() {
    let sandbox = Sandbox::new();
    let tar = Tar::default().special("run/pipe", b'6', 0o620).finish();
    apply(&tar, &sandbox.dest(), &options(Compression::None, 0));
    let meta = std::fs::symlink_metadata(sandbox.dest().join("run/pipe")).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.mode() & 0o7777, 0o620);
}

#[test]
fn ids_that_overflow_after_the_shift_are_refused() {
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .pax(&[("uid", b"4294967295")])
        .file("f", b"", 0o644)
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::IdOverflow { .. }), "{err}");
    let tar = Tar::default()
        .pax(&[("gid", b"2147483648")])
        .file("g", b"", 0o644)
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 1 << 31), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::IdOverflow { .. }), "{err}");
}

#[test]
fn replace_semantics_follow_docker() {
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .file("x", b"file", 0o644)
        .dir("x", 0o700) // a file replaced by a folder
        .file("x/inner", b"in", 0o644)
        .file("x", b"file again", 0o600) // a folder (with content) replaced by a file
        .dir("d", 0o755)
        .file("d/keep", b"k", 0o644)
        .dir("d", 0o711) // a folder stays, its mode changes
        .symlink("s", "/nowhere")
        .file("s", b"not through the link", 0o644)
        .finish();
    apply(&tar, &sandbox.dest(), &options(Compression::None, 0));
    let dest = sandbox.dest();
    assert_eq!(std::fs::read(dest.join("x")).unwrap(), b"file again");
    assert_eq!(std::fs::read(dest.join("d/keep")).unwrap(), b"k");
    assert_eq!(
        std::fs::metadata(dest.join("d")).unwrap().mode() & 0o7777,
        0o711
    );
    assert!(std::fs::symlink_metadata(dest.join("s")).unwrap().is_file());
}

#[test]
fn long_names_from_gnu_and_pax_records_are_honoured() {
    let sandbox = Sandbox::new();
    let long = format!("{}/file", "d".repeat(150));
    let mut tar = Tar::default();
    let mut name = long.clone().into_bytes();
    name.push(0);
    tar.header(b"././@LongLink", b'L', name.len() as u64, 0o644, b"");
    tar.data(&name);
    tar.file("truncated-name", b"gnu", 0o644);
    tar.pax(&[
        ("path", b"pax/name"),
        ("linkpath", long.as_bytes()),
        ("mtime", b"1600000000.5"),
    ]);
    tar.hardlink("ignored", "ignored");
    let tar = tar.finish();
    apply(&tar, &sandbox.dest(), &options(Compression::None, 0));
    assert_eq!(std::fs::read(sandbox.dest().join(&long)).unwrap(), b"gnu");
    let link = std::fs::metadata(sandbox.dest().join("pax/name")).unwrap();
    assert_eq!(
        link.ino(),
        std::fs::metadata(sandbox.dest().join(&long)).unwrap().ino()
    );
}

// ---------------------------------------------------------------------------------------
// diff_id

#[test]
fn diff_id_is_sha256_of_the_whole_uncompressed_stream() {
    let mut tar = Tar::default().file("a", b"content", 0o644).finish();
    tar.extend_from_slice(&[0u8; 512 * 17]); // padding after the end-of-archive blocks
    let want = hex::encode(Sha256::digest(&tar));
    for (compression, bytes) in [
        (Compression::None, tar.clone()),
        (Compression::Gzip, gzip(&tar)),
        (Compression::Zstd, zstd::encode_all(&tar[..], 3).unwrap()),
    ] {
        let sandbox = Sandbox::new();
        let report = apply(&bytes, &sandbox.dest(), &options(compression, 0));
        assert_eq!(report.diff_id.hex(), want, "{compression:?}");
        assert_eq!((report.entries, report.bytes), (1, 7));
    }
}

// ---------------------------------------------------------------------------------------
// Review regressions (rev-unpack).

#[test]
fn implicit_parent_folders_count_against_max_entries() {
    // One entry 200 folders deep used to make 200 folders for the price of one entry: with
    // a million entries that is 200 million inodes (a disk bomb under every byte cap).
    let sandbox = Sandbox::new();
    let deep = "d/".repeat(200) + "f";
    let tar = Tar::default()
        .pax(&[("path", deep.as_bytes())])
        .file("short", b"x", 0o644)
        .finish();
    let mut opts = options(Compression::None, 0);
    opts.limits.max_entries = 100;
    let err = sandbox.apply_contained(&tar, &opts, &[]).unwrap_err();
    assert!(
        matches!(err, UnpackError::TooManyEntries { limit: 100, .. }),
        "{err}"
    );
    // Folders named by their own entries are not counted twice.
    let sandbox = Sandbox::new();
    let mut tar = Tar::default();
    let mut path = String::new();
    for _ in 0..9 {
        path.push_str("d/");
        tar.dir(&path, 0o755);
    }
    tar.file(&format!("{path}f"), b"x", 0o644);
    let mut opts = options(Compression::None, 0);
    opts.limits.max_entries = 10;
    let report = sandbox.apply_contained(&tar.finish(), &opts, &[]).unwrap();
    assert_eq!(report.entries, 10);
}

#[test]
fn pax_mtime_at_the_i64_minimum_with_a_fraction_is_refused_not_a_panic() {
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .pax(&[("mtime", b"-9223372036854775808.5")])
        .file("f", b"x", 0o644)
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::InvalidHeader { .. }), "{err}");
}

#[test]
fn header_mtime_past_i64_is_stored_not_refused() {
    let sandbox = Sandbox::new();
    let mut tar = Tar::default();
    tar.header_with(b"f", b'0', 0, 0o644, b"", |b| {
        b[136] = 0x80; // base-256 mtime: u64::MAX
        b[140..148].copy_from_slice(&u64::MAX.to_be_bytes());
    });
    tar.dir("d", 0o755);
    let tar = tar.finish();
    let result = sandbox.apply_contained(&tar, &options(Compression::None, 0), &[]);
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn hostile_oddities_stay_inside_and_mean_what_docker_means() {
    let sandbox = Sandbox::new();
    let dest = sandbox.dest();
    let tar = Tar::default()
        .dir("./", 0o000) // the layer root made 0000: later entries still land
        .file(".wh..wh..opq", b"", 0o644) // opaque marker at the root
        .file(".wh..wh.plnk", b"", 0o644) // aufs metadata: ignored
        .file("etc/.wh..wh.aufs", b"", 0o644)
        .file("target", b"t", 0o644)
        .symlink("sym", "target")
        .hardlink("hsym", "sym") // a hardlink to a symlink links the symlink itself
        .hardlink("h", "target")
        .file("h", b"rewritten", 0o644) // rewriting a hardlink must not write the target
        .special("pipe", b'6', 0o644)
        .file("pipe", b"not into the fifo", 0o644) // a file replacing a fifo never opens it
        .dir("dd", 0o755)
        .file("dd/t2", b"t2", 0o644)
        .hardlink("h2", "dd/t2")
        .file("dd", b"dir replaced", 0o644) // the folder holding a hardlink target goes
        .file("nl\nname", b"n", 0o644)
        .file("//slashes", b"s", 0o644)
        .finish();
    sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap();
    let meta = std::fs::metadata(&dest).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o000);
    assert_eq!(
        xattr_of(&dest, "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!dest.join(".wh..wh.plnk").exists());
    assert!(!dest.join("etc/.wh..wh.aufs").exists());
    assert_eq!(std::fs::read(dest.join("target")).unwrap(), b"t");
    assert_eq!(std::fs::read(dest.join("h")).unwrap(), b"rewritten");
    let hsym = std::fs::symlink_metadata(dest.join("hsym")).unwrap();
    assert!(hsym.file_type().is_symlink());
    assert_eq!(
        std::fs::read(dest.join("pipe")).unwrap(),
        b"not into the fifo"
    );
    assert_eq!(std::fs::read(dest.join("h2")).unwrap(), b"t2");
    assert_eq!(std::fs::read(dest.join("dd")).unwrap(), b"dir replaced");
    assert_eq!(std::fs::read(dest.join("nl\nname")).unwrap(), b"n");
    assert_eq!(std::fs::read(dest.join("slashes")).unwrap(), b"s");

    // `.` as a symlink, a hardlink or a whiteout of the root: refused.
    for tar in [
        Tar::default().symlink(".", "/").finish(),
        Tar::default().symlink("./", "/etc").finish(),
        Tar::default().hardlink(".", "target").finish(),
        Tar::default().file(".wh..", b"", 0o644).finish(),
        Tar::default().file("./.wh.", b"", 0o644).finish(),
    ] {
        let sandbox = Sandbox::new();
        let err = sandbox
            .apply_contained(&tar, &options(Compression::None, 0), &[])
            .unwrap_err();
        assert!(
            matches!(
                err,
                UnpackError::InvalidPath { .. } | UnpackError::Whiteout { .. }
            ),
            "{err}"
        );
        assert!(std::fs::symlink_metadata(sandbox.dest()).unwrap().is_dir());
    }
}

#[test]
fn mode_bits_outside_07777_are_dropped() {
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .file("f", b"x", 0o170_4755) // S_IFMT garbage over a setuid file
        .dir("d", 0o141_755)
        .finish();
    apply(&tar, &sandbox.dest(), &options(Compression::None, 0));
    let f = std::fs::symlink_metadata(sandbox.dest().join("f")).unwrap();
    assert!(f.is_file());
    assert_eq!(f.mode() & 0o7777, 0o4755);
    let d = std::fs::symlink_metadata(sandbox.dest().join("d")).unwrap();
    assert!(d.is_dir());
}

#[test]
fn a_folder_named_twice_keeps_the_mtime_of_its_last_entry() {
    // Folder mtimes used to be applied last-made-first, so the first entry's won.
    let sandbox = Sandbox::new();
    let mut tar = Tar::default();
    tar.header_with(b"d", b'5', 0, 0o755, b"", |b| octal(&mut b[136..148], 1000));
    tar.file("d/f", b"x", 0o644);
    tar.header_with(b"d", b'5', 0, 0o700, b"", |b| octal(&mut b[136..148], 2000));
    tar.header_with(b"./", b'5', 0, 0o755, b"", |b| {
        octal(&mut b[136..148], 3000)
    });
    tar.header_with(b".", b'5', 0, 0o755, b"", |b| octal(&mut b[136..148], 4000));
    apply(
        &tar.finish(),
        &sandbox.dest(),
        &options(Compression::None, 0),
    );
    let d = std::fs::metadata(sandbox.dest().join("d")).unwrap();
    assert_eq!((d.mtime(), d.mode() & 0o7777), (2000, 0o700));
    assert_eq!(std::fs::metadata(sandbox.dest()).unwrap().mtime(), 4000);
}

/// A layer that makes a folder chain `depth` deep under `a/` (every entry within
/// max_depth: each one goes through a symlink to the bottom made so far), then ends
/// with `last` entries.
fn deep_tree_layer(depth: usize, last: impl FnOnce(&mut Tar)) -> Vec<u8> {
    let mut tar = Tar::default();
    tar.dir("a", 0o755);
    // The bottom is `head` followed by `lit` levels of `d`.
    let (mut head, mut lit) = ("a".to_string(), 0usize);
    let mut made = 0;
    let mut k = 0;
    while made < depth {
        let link = format!("s{k}");
        k += 1;
        let target = format!("/{head}{}", "/d".repeat(lit));
        tar.pax(&[("linkpath", target.as_bytes())]);
        tar.symlink(&link, "ignored");
        tar.pax(&[("path", format!("{link}{}", "/d".repeat(200)).as_bytes())]);
        tar.dir("ignored", 0o755);
        made += 200;
        lit += 200;
        if head.len() + 2 * (lit + 200) > 4000 {
            (head, lit) = (link, 200);
        }
    }
    last(&mut tar);
    tar.finish()
}

#[test]
fn replacing_a_folder_ten_thousand_deep_neither_overflows_nor_runs_out_of_fds() {
    // Folder removal used to recurse, holding one fd and one stack frame per level: a
    // layer can build a chain deeper than the fd limit and the thread's stack.
    let layer = deep_tree_layer(10_000, |tar| {
        tar.file("a", b"replaced", 0o644);
    });
    let sandbox = Sandbox::new();
    let mut opts = options(Compression::None, 0);
    opts.limits.max_path_bytes = 8192;
    sandbox.apply_contained(&layer, &opts, &[]).unwrap();
    assert_eq!(
        std::fs::read(sandbox.dest().join("a")).unwrap(),
        b"replaced"
    );
}

#[test]
fn a_snapshot_ten_thousand_deep_can_be_deleted() {
    use farm_puller::snapshots::Snapshots;
    let layer = deep_tree_layer(10_000, |_| {});
    let tmp = tempfile::tempdir().unwrap();
    let snapshots = Snapshots::open(tmp.path()).unwrap();
    let prepared = snapshots.prepare().unwrap();
    apply(&layer, &prepared.fs(), &options(Compression::None, 0));
    snapshots.abort(prepared).unwrap();
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn a_file_replacing_a_symlink_in_the_cached_parents_path_drops_the_cache() {
    // `p` resolves through `q/k/..`; the file entry `p/k` replaces the symlink `q/k`, so
    // `p` no longer resolves (q/k is a file now). The cached fd of `p` used to outlive
    // that, and `p/z` landed in `q/z`: inside the root, but not where the path leads.
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .dir("q", 0o755)
        .dir("q/kk", 0o755)
        .symlink("q/k", "/q/kk")
        .symlink("p", "q/k/..")
        .file("p/a", b"a", 0o644)
        .file("p/k", b"k", 0o644)
        .file("p/z", b"z", 0o644)
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::Fs { .. }), "{err}");
    assert!(err.to_string().contains("p/z"), "{err}");
    let dest = sandbox.dest();
    assert_eq!(std::fs::read(dest.join("q/a")).unwrap(), b"a");
    assert_eq!(std::fs::read(dest.join("q/k")).unwrap(), b"k");
    assert!(!dest.join("q/z").exists());
}

#[test]
fn a_hardlink_replacing_a_symlink_in_the_cached_parents_path_drops_the_cache() {
    let sandbox = Sandbox::new();
    let tar = Tar::default()
        .dir("q", 0o755)
        .dir("q/kk", 0o755)
        .symlink("q/k", "/q/kk")
        .symlink("p", "q/k/..")
        .file("p/a", b"a", 0o644)
        .hardlink("p/k", "q/a")
        .file("p/z", b"z", 0o644)
        .finish();
    let err = sandbox
        .apply_contained(&tar, &options(Compression::None, 0), &[])
        .unwrap_err();
    assert!(matches!(err, UnpackError::Fs { .. }), "{err}");
    assert!(!sandbox.dest().join("q/z").exists());
}

#[test]
fn a_pax_header_of_thirty_thousand_xattrs_is_handled_in_linear_time() {
    // Each xattr record used to scan all earlier ones (O(n²): 500 million comparisons
    // for one 1 MiB header, per entry).
    let names: Vec<String> = (0..32_000)
        .map(|i| format!("SCHILY.xattr.trusted.{i}"))
        .collect();
    let records: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
    let tar = Tar::default().pax(&records).file("f", b"x", 0o644).finish();
    let sandbox = Sandbox::new();
    let started = Instant::now();
    let report = apply(&tar, &sandbox.dest(), &options(Compression::None, 0));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(report.warnings.len(), 101, "warnings are capped");
    assert_eq!(std::fs::read(sandbox.dest().join("f")).unwrap(), b"x");
}
