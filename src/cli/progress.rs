//! Pull progress: bars on a terminal (per layer and total, like docker), plain lines
//! otherwise, nothing with `--quiet`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use farm_puller::pull::{PullEvent, PullProgress};
use farm_puller::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--quiet`: warnings only.
pub struct Quiet;

impl PullProgress for Quiet {
    fn event(&self, event: PullEvent) {
        if let PullEvent::Warning { digest, message } = event {
            eprintln!("warning: {}: {message}", digest.short());
        }
    }
}

/// Plain lines on stdout, for logs and pipes (on stderr for `farm run`, whose stdout is
/// the container's, as docker does).
#[derive(Default)]
pub struct Lines {
    downloaded: AtomicBool,
    stderr: bool,
}

impl Lines {
    /// Lines on stderr.
    pub fn on_stderr() -> Lines {
        Lines {
            stderr: true,
            ..Lines::default()
        }
    }
}

macro_rules! say {
    ($lines:expr, $($arg:tt)*) => {
        if $lines.stderr {
            eprintln!($($arg)*)
        } else {
            println!($($arg)*)
        }
    };
}

impl PullProgress for Lines {
    fn event(&self, event: PullEvent) {
        if matches!(event, PullEvent::Downloading { .. }) {
            self.downloaded.store(true, Ordering::Relaxed);
        }
        match event {
            PullEvent::Resolved {
                name,
                manifest_digest,
                layers,
                total_bytes,
            } => {
                say!(
                    self,
                    "{name}: pulling {layers} layer{} ({}), manifest {manifest_digest}",
                    if layers == 1 { "" } else { "s" },
                    human_bytes(total_bytes)
                )
            }
            PullEvent::LayerExists { digest } => say!(self, "{}: already exists", digest.short()),
            PullEvent::Downloading {
                digest,
                size,
                offset,
            } if offset > 0 => {
                say!(
                    self,
                    "{}: resuming download at {} of {}",
                    digest.short(),
                    human_bytes(offset),
                    human_bytes(size)
                )
            }
            PullEvent::Downloading { digest, size, .. } => {
                say!(
                    self,
                    "{}: downloading {}",
                    digest.short(),
                    human_bytes(size)
                )
            }
            PullEvent::Progress { .. } | PullEvent::Extracting { .. } => {}
            PullEvent::Verified { digest } => say!(self, "{}: verified", digest.short()),
            PullEvent::Extracted { digest } => say!(self, "{}: pull complete", digest.short()),
            PullEvent::Warning { digest, message } => {
                eprintln!("warning: {}: {message}", digest.short())
            }
            PullEvent::Done { record } => {
                say!(self, "Digest: {}", record.manifest_digest);
                say!(
                    self,
                    "{}",
                    status_line(self.downloaded.load(Ordering::Relaxed), &record.name)
                );
            }
        }
    }
}

/// Progress bars on a terminal: one per layer and a total.
pub struct Bars {
    multi: MultiProgress,
    state: Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    layers: HashMap<Digest, ProgressBar>,
    done: HashMap<Digest, u64>,
    total: Option<ProgressBar>,
    downloaded: bool,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            state: Mutex::default(),
        }
    }

    fn layer(&self, state: &mut BarState, digest: &Digest, size: u64) -> ProgressBar {
        state
            .layers
            .entry(digest.clone())
            .or_insert_with(|| {
                let bar = self.multi.insert_from_back(1, ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix}: {msg:<12} [{bar:30}] {bytes:>10}/{total_bytes:<10}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(digest.short().to_owned());
                bar
            })
            .clone()
    }
}

impl PullProgress for Bars {
    fn event(&self, event: PullEvent) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            PullEvent::Resolved {
                name, total_bytes, ..
            } => {
                let _ = self.multi.println(format!("{name}: pulling"));
                let total = self.multi.add(ProgressBar::new(total_bytes));
                total.set_style(
                    ProgressStyle::with_template(
                        "total         [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                state.total = Some(total);
            }
            PullEvent::LayerExists { digest } => {
                let bar = self.layer(&mut state, &digest, 0);
                bar.finish_with_message("already exists");
            }
            PullEvent::Downloading {
                digest,
                size,
                offset,
            } => {
                state.downloaded = true;
                let bar = self.layer(&mut state, &digest, size);
                bar.set_position(offset);
                bar.set_message("downloading");
            }
            PullEvent::Progress { digest, done, size } => {
                let bar = self.layer(&mut state, &digest, size);
                bar.set_position(done);
                let previous = state.done.insert(digest, done).unwrap_or(0);
                if let Some(total) = &state.total {
                    total.inc(done.saturating_sub(previous));
                }
            }
            PullEvent::Verified { digest } => {
                self.layer(&mut state, &digest, 0).set_message("verified")
            }
            PullEvent::Extracting { digest } => {
                self.layer(&mut state, &digest, 0).set_message("extracting")
            }
            PullEvent::Extracted { digest } => self
                .layer(&mut state, &digest, 0)
                .finish_with_message("pull complete"),
            PullEvent::Warning { digest, message } => {
                let _ = self
                    .multi
                    .println(format!("warning: {}: {message}", digest.short()));
            }
            PullEvent::Done { record } => {
                if let Some(total) = state.total.take() {
                    total.finish();
                }
                let _ = self
                    .multi
                    .println(format!("Digest: {}", record.manifest_digest));
                let _ = self
                    .multi
                    .println(status_line(state.downloaded, &record.name));
            }
        }
    }
}

/// docker's last line of a pull.
fn status_line(downloaded: bool, name: &str) -> String {
    if downloaded {
        format!("Status: Downloaded newer image for {name}")
    } else {
        format!("Status: Image is up to date for {name}")
    }
}

/// `4.19MB`, as docker prints sizes: decimal units, four significant digits.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let decimals = match value {
        v if v >= 100.0 => 1,
        v if v >= 10.0 => 2,
        _ => 3,
    };
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_print_like_docker() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(4_190_000), "4.19MB");
        assert_eq!(human_bytes(1_234_567), "1.235MB");
        assert_eq!(human_bytes(123_456_789), "123.5MB");
        assert_eq!(human_bytes(2_000_000_000), "2GB");
    }
}
