//! Folder mtimes, set once the whole layer is applied (making an entry inside a folder
//! changes the folder's mtime). One record per folder path, the last entry's mtime winning
//! (as docker), and a bound on the memory the records take: a layer naming the same
//! 4 KiB folder path a million times costs one record, not 4 GiB.

use std::collections::HashMap;

/// Bytes of folder paths (plus bookkeeping) one layer may make farm remember.
pub(super) const MAX_DIR_BYTES: usize = 256 << 20;
/// What one record costs besides its path: hash map slot, box header, the mtime.
const RECORD_OVERHEAD: usize = 64;

pub(super) struct DirTimes {
    times: HashMap<Box<[u8]>, (i64, u32)>,
    bytes: usize,
    max_bytes: usize,
}

impl DirTimes {
    pub(super) fn new(max_bytes: usize) -> DirTimes {
        DirTimes {
            times: HashMap::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Remember `mtime` for the folder `path`; false (nothing kept) when a new record
    /// would pass the memory bound.
    pub(super) fn record(&mut self, path: &[u8], mtime: (i64, u32)) -> bool {
        if let Some(time) = self.times.get_mut(path) {
            *time = mtime;
            return true;
        }
        let cost = path.len() + RECORD_OVERHEAD;
        if self.bytes + cost > self.max_bytes {
            return false;
        }
        self.bytes += cost;
        self.times.insert(path.into(), mtime);
        true
    }

    /// Every folder and its mtime, in no particular order: setting a folder's mtime does
    /// not change its parent's, so the order does not matter once all entries are made.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], (i64, u32))> {
        self.times.iter().map(|(path, time)| (&path[..], *time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_paths_cost_one_record_and_the_last_mtime_wins() {
        let mut dirs = DirTimes::new(10_000);
        let long = vec![b'a'; 4096];
        for i in 0..100_000 {
            assert!(dirs.record(&long, (i, 0)));
        }
        assert_eq!(dirs.bytes, 4096 + RECORD_OVERHEAD);
        assert_eq!(
            dirs.iter().collect::<Vec<_>>(),
            vec![(&long[..], (99_999, 0))]
        );
    }

    #[test]
    fn new_paths_past_the_bound_are_refused() {
        let mut dirs = DirTimes::new(3 * (10 + RECORD_OVERHEAD));
        for i in 0..3u8 {
            assert!(dirs.record(&[b'0' + i; 10], (0, 0)));
        }
        assert!(!dirs.record(&[b'x'; 10], (0, 0)));
        assert!(dirs.record(&[b'0'; 10], (5, 0)), "a known path is updated");
        assert_eq!(dirs.iter().count(), 3);
    }
}
