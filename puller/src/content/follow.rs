//! Reading a blob while it is written: [`Follower`] reads an ingest's partial file up to
//! what the writer has published, waiting for more, so a layer is unpacked in the same pass
//! as it downloads without holding its bytes in memory (the page cache holds them).
//!
//! The follower never claims the blob is good: it ends (EOF) only once the writer's commit
//! verified size and digest, and fails once the writer failed, was dropped, or restarted
//! the blob from byte 0 (a server that ignored a Range): a restarted unpack starts over in
//! a fresh folder.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};

/// How a blob being written ended, as its followers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Still being written.
    Open,
    /// Size and digest checked, the blob renamed into `blobs/`.
    Verified,
    /// The download failed, the digest did not match, or the ingest was dropped.
    Failed,
}

#[derive(Debug)]
struct State {
    /// Bytes of the partial file that are written through to the file (readable by fd).
    published: u64,
    /// Bumped each time the writer throws its bytes away and starts again at 0.
    generation: u64,
    verdict: Verdict,
    /// The reader gave up (its unpack failed): it stops waiting.
    abandoned: bool,
}

/// The state an [`super::Ingest`] shares with its followers.
#[derive(Debug)]
pub(super) struct Feed {
    state: Mutex<State>,
    changed: Condvar,
}

impl Feed {
    pub(super) fn new(published: u64) -> Arc<Feed> {
        Arc::new(Feed {
            state: Mutex::new(State {
                published,
                generation: 0,
                verdict: Verdict::Open,
                abandoned: false,
            }),
            changed: Condvar::new(),
        })
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state);
        self.changed.notify_all();
    }

    pub(super) fn publish(&self, published: u64) {
        self.update(|s| s.published = s.published.max(published));
    }

    /// Called before the writer truncates the file: readers of the old bytes must fail.
    pub(super) fn restart(&self) {
        self.update(|s| {
            s.generation += 1;
            s.published = 0;
        });
    }

    pub(super) fn finish(&self, verdict: Verdict) {
        self.update(|s| {
            if s.verdict == Verdict::Open {
                s.verdict = verdict;
            }
        });
    }
}

/// Reads a blob being ingested from byte 0, blocking until bytes are published. See the
/// module docs for when it ends.
#[derive(Debug)]
pub struct Follower {
    file: File,
    feed: Arc<Feed>,
    pos: u64,
    size: u64,
    generation: u64,
}

impl Follower {
    pub(super) fn new(file: File, feed: Arc<Feed>, size: u64) -> Follower {
        let generation = feed
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generation;
        Follower {
            file,
            feed,
            pos: 0,
            size,
            generation,
        }
    }

    /// Read again from byte 0 of the blob as it is now (after the writer started over):
    /// for a fresh unpack of a download that restarted.
    pub fn restart(&mut self) {
        let mut state = self.feed.state.lock().unwrap_or_else(|e| e.into_inner());
        state.abandoned = false;
        self.generation = state.generation;
        self.pos = 0;
    }

    /// A handle to stop a blocked read from another thread, and to ask for the verdict.
    pub fn handle(&self) -> FollowHandle {
        FollowHandle {
            feed: self.feed.clone(),
            generation: self.generation,
        }
    }
}

/// See [`Follower::handle`].
#[derive(Debug, Clone)]
pub struct FollowHandle {
    feed: Arc<Feed>,
    generation: u64,
}

impl FollowHandle {
    /// Make the follower's reads fail (its consumer gave up).
    pub fn abandon(&self) {
        self.feed.update(|s| s.abandoned = true);
    }

    /// True when the blob was verified and never restarted after the follower began: all
    /// it read were the bytes of the verified blob.
    pub fn verified(&self) -> bool {
        let state = self.feed.state.lock().unwrap_or_else(|e| e.into_inner());
        state.verdict == Verdict::Verified && state.generation == self.generation
    }

    /// True when the writer started the blob over since the follower began.
    pub fn restarted(&self) -> bool {
        let state = self.feed.state.lock().unwrap_or_else(|e| e.into_inner());
        state.generation != self.generation
    }
}

/// The error a follower returns once its blob cannot be read to a verified end.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FollowError(&'static str);

fn follow_error(reason: &'static str) -> io::Error {
    io::Error::other(FollowError(reason))
}

impl Read for Follower {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let available = {
            let mut state = self.feed.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if state.generation != self.generation {
                    return Err(follow_error("the download started over"));
                }
                if state.abandoned {
                    return Err(follow_error("the unpack gave up"));
                }
                if state.published > self.pos {
                    break state.published - self.pos;
                }
                match state.verdict {
                    Verdict::Verified if self.pos == self.size => return Ok(0),
                    Verdict::Verified | Verdict::Failed => {
                        return Err(follow_error("the blob failed to download or verify"))
                    }
                    Verdict::Open => {}
                }
                state = self
                    .feed
                    .changed
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        let want = buf
            .len()
            .min(usize::try_from(available).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        // The writer bumps the generation before it truncates: bytes read while the
        // generation is unchanged are the bytes of this generation.
        if self.handle().restarted() {
            return Err(follow_error("the download started over"));
        }
        if n == 0 {
            return Err(follow_error("the partial blob is shorter than published"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}
