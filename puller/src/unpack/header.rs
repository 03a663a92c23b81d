//! What one tar entry says, once PAX and GNU long-name records are folded in: parsing of
//! PAX records and normalisation of entry paths (before anything touches the filesystem).

/// The keys of PAX extended headers farm honours (local `x` records).
#[derive(Debug, Default)]
pub(super) struct Pax {
    pub(super) path: Option<Vec<u8>>,
    pub(super) linkpath: Option<Vec<u8>>,
    pub(super) uid: Option<u64>,
    pub(super) gid: Option<u64>,
    pub(super) mtime: Option<(i64, u32)>,
    pub(super) size: Option<u64>,
    /// In first-seen order; a later record for a name replaces the value in place, and an
    /// empty value (POSIX: the key is deleted) stays as a tombstone: users skip it.
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Where each xattr name sits in `xattrs`: records are folded in linear time (a 1 MiB
    /// header holds 30 000 of them).
    xattr_index: std::collections::HashMap<Vec<u8>, usize>,
    /// A `GNU.sparse.*` key was present.
    pub(super) sparse: bool,
    /// `GNU.sparse.realsize` / `GNU.sparse.size`: the apparent size of a sparse file.
    pub(super) sparse_size: Option<u64>,
}

const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// Fold the records of one PAX extended header (`LEN key=value\n` ...) into `pax`.
/// An empty value deletes the key, as POSIX says.
pub(super) fn parse_pax(mut data: &[u8], pax: &mut Pax) -> Result<(), String> {
    while !data.is_empty() {
        // Records may be followed by NUL padding written by some tools.
        if data.iter().all(|b| *b == 0) {
            break;
        }
        let space = data
            .iter()
            .position(|b| *b == b' ')
            .ok_or("a PAX record has no length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("a PAX record has an invalid length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("a PAX record has an invalid length".into());
        }
        let record = &data[space + 1..len - 1];
        data = &data[len..];
        let eq = record
            .iter()
            .position(|b| *b == b'=')
            .ok_or("a PAX record has no '='")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let empty = value.is_empty();
        match key {
            b"path" => pax.path = (!empty).then(|| value.to_vec()),
            b"linkpath" => pax.linkpath = (!empty).then(|| value.to_vec()),
            b"uid" => {
                pax.uid = if empty {
                    None
                } else {
                    Some(number(key, value)?)
                }
            }
            b"gid" => {
                pax.gid = if empty {
                    None
                } else {
                    Some(number(key, value)?)
                }
            }
            b"size" => {
                pax.size = if empty {
                    None
                } else {
                    Some(number(key, value)?)
                }
            }
            b"mtime" => pax.mtime = if empty { None } else { Some(time(value)?) },
            _ if key.starts_with(XATTR_PREFIX) => {
                let name = &key[XATTR_PREFIX.len()..];
                match pax.xattr_index.get(name) {
                    Some(&i) => pax.xattrs[i].1 = value.to_vec(),
                    None => {
                        pax.xattr_index.insert(name.to_vec(), pax.xattrs.len());
                        pax.xattrs.push((name.to_vec(), value.to_vec()));
                    }
                }
            }
            _ if key.starts_with(b"GNU.sparse.") => {
                pax.sparse = true;
                if key == b"GNU.sparse.realsize" || key == b"GNU.sparse.size" {
                    pax.sparse_size = number(key, value).ok();
                }
            }
            // atime, ctime, uname, gname, comment, charset, LIBARCHIVE.*: not needed.
            _ => {}
        }
    }
    Ok(())
}

fn number(key: &[u8], value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("PAX {} is not a number", String::from_utf8_lossy(key)))
}

/// A PAX time: decimal seconds with an optional fraction, possibly negative.
fn time(value: &[u8]) -> Result<(i64, u32), String> {
    let bad = || "PAX mtime is not a time".to_string();
    let s = std::str::from_utf8(value).map_err(|_| bad())?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut nanos: u32 = 0;
    for b in frac.bytes().chain(std::iter::repeat(b'0')).take(9) {
        nanos = nanos * 10 + u32::from(b - b'0');
    }
    if s.starts_with('-') && nanos > 0 {
        // -1.5 is 1.5 s before the epoch: -2 s + 0.5 s.
        return Ok((secs.checked_sub(1).ok_or_else(bad)?, 1_000_000_000 - nanos));
    }
    Ok((secs, nanos))
}

/// Why an entry path was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BadPath {
    TooLong(usize),
    TooDeep,
    Invalid(&'static str),
}

/// Normalise an entry path: leading `/` and `./` and empty or `.` components dropped,
/// `..` refused. Caps are checked on the raw bytes first, so a hostile path costs nothing.
/// The result is relative and `/`-joined; empty means the root of the layer.
pub(super) fn normalize(
    raw: &[u8],
    max_path_bytes: usize,
    max_depth: usize,
) -> Result<Vec<u8>, BadPath> {
    if raw.len() > max_path_bytes {
        return Err(BadPath::TooLong(raw.len()));
    }
    if raw.is_empty() {
        return Err(BadPath::Invalid("empty name"));
    }
    if raw.contains(&0) {
        return Err(BadPath::Invalid("NUL byte in name"));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut depth = 0usize;
    for component in raw.split(|b| *b == b'/') {
        match component {
            b"" | b"." => continue,
            b".." => return Err(BadPath::Invalid("'..' component")),
            _ => {}
        }
        depth += 1;
        if depth > max_depth {
            return Err(BadPath::TooDeep);
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(component);
    }
    Ok(out)
}

/// Split a normalised path into (parent, final name). The parent of a top-level name is `.`.
pub(super) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b".", path),
    }
}

/// A path for a message: lossy UTF-8, control characters escaped, long ones shortened.
pub(super) fn show(path: &[u8]) -> String {
    const MAX: usize = 200;
    let lossy = String::from_utf8_lossy(&path[..path.len().min(MAX * 4)]);
    let mut out: String = lossy
        .chars()
        .take(MAX)
        .flat_map(char::escape_default)
        .collect();
    if lossy.chars().count() > MAX || path.len() > MAX * 4 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_and_refuses() {
        assert_eq!(normalize(b"./a//b/./c/", 100, 10).unwrap(), b"a/b/c");
        assert_eq!(normalize(b"/etc/passwd", 100, 10).unwrap(), b"etc/passwd");
        assert_eq!(normalize(b"./", 100, 10).unwrap(), b"");
        assert_eq!(
            normalize(b"a/../b", 100, 10),
            Err(BadPath::Invalid("'..' component"))
        );
        assert_eq!(
            normalize(b"..", 100, 10),
            Err(BadPath::Invalid("'..' component"))
        );
        assert_eq!(normalize(b"", 100, 10), Err(BadPath::Invalid("empty name")));
        assert_eq!(
            normalize(b"a\0b", 100, 10),
            Err(BadPath::Invalid("NUL byte in name"))
        );
        assert_eq!(normalize(&[b'a'; 101], 100, 10), Err(BadPath::TooLong(101)));
        assert_eq!(normalize(b"a/b/c/d", 100, 3), Err(BadPath::TooDeep));
        assert_eq!(normalize(b"..a/b..", 100, 3).unwrap(), b"..a/b..");
    }

    #[test]
    fn split_gives_parent_and_name() {
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b"."[..], &b"c"[..]));
    }

    #[test]
    fn pax_records_parse() {
        let mut data = Vec::new();
        for (k, v) in [
            ("path", "a/very/long/name"),
            ("uid", "1000"),
            ("mtime", "1700000000.25"),
            ("SCHILY.xattr.user.x", "v=1"),
            ("size", "12"),
        ] {
            let body = format!(" {k}={v}\n");
            let mut len = body.len();
            while len.to_string().len() + body.len() != len {
                len = len.to_string().len() + body.len();
            }
            data.extend_from_slice(format!("{len}{body}").as_bytes());
        }
        let mut pax = Pax::default();
        parse_pax(&data, &mut pax).unwrap();
        assert_eq!(pax.path.as_deref(), Some(&b"a/very/long/name"[..]));
        assert_eq!(pax.uid, Some(1000));
        assert_eq!(pax.size, Some(12));
        assert_eq!(pax.mtime, Some((1_700_000_000, 250_000_000)));
        assert_eq!(pax.xattrs, vec![(b"user.x".to_vec(), b"v=1".to_vec())]);
        assert!(parse_pax(b"99 path=x\n", &mut Pax::default()).is_err());

        // A later record replaces an earlier one; an empty value leaves a tombstone.
        let mut pax = Pax::default();
        let records = b"25 SCHILY.xattr.user.a=1\n25 SCHILY.xattr.user.b=2\n\
                        25 SCHILY.xattr.user.a=3\n24 SCHILY.xattr.user.b=\n";
        parse_pax(records, &mut pax).unwrap();
        assert_eq!(
            pax.xattrs,
            vec![
                (b"user.a".to_vec(), b"3".to_vec()),
                (b"user.b".to_vec(), Vec::new())
            ]
        );
        assert!(parse_pax(b"garbage", &mut Pax::default()).is_err());
    }

    #[test]
    fn pax_negative_fractional_time() {
        assert_eq!(time(b"-1.5").unwrap(), (-2, 500_000_000));
        assert_eq!(time(b"5").unwrap(), (5, 0));
        assert!(time(b"x").is_err());
        assert!(time(b"-9223372036854775808.5").is_err());
    }
}
