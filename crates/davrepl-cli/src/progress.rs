//! What the user sees: progress bars on a terminal, one line per action otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The reporter of one sync.
pub struct Progress {
    bars: Option<Bars>,
    quiet: bool,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("bars", &self.bars.is_some())
            .field("quiet", &self.quiet)
            .finish()
    }
}

struct Bars {
    multi: MultiProgress,
    items: ProgressBar,
    bytes: ProgressBar,
}

impl Progress {
    /// Bars when stderr is a terminal and not `quiet`; lines on stdout otherwise.
    pub fn new(quiet: bool) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let items = multi.add(ProgressBar::hidden());
            items.set_style(
                ProgressStyle::with_template(
                    "{spinner} items {bar:30} {pos}/{len} {per_sec} ETA {eta} {wide_msg}",
                )
                .expect("a valid template"),
            );
            let bytes = multi.add(ProgressBar::hidden());
            bytes.set_style(
                ProgressStyle::with_template(
                    "  bytes {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .expect("a valid template"),
            );
            Bars {
                multi,
                items,
                bytes,
            }
        });
        Self { bars, quiet }
    }

    /// A phase with `items` transfers of `bytes` in total starts.
    pub fn begin(&self, items: u64, bytes: u64) {
        if let Some(b) = &self.bars {
            if items == 0 {
                return;
            }
            b.items.set_draw_target(ProgressDrawTarget::stderr());
            b.bytes.set_draw_target(ProgressDrawTarget::stderr());
            b.items.set_length(items);
            b.items.set_position(0);
            b.bytes.set_length(bytes);
            b.bytes.set_position(0);
            b.items.enable_steady_tick(Duration::from_millis(200));
        }
    }

    /// One action done.
    pub fn action(&self, verb: &str, path: &str) {
        match &self.bars {
            Some(b) => b.items.set_message(format!("{verb} {path}")),
            None if !self.quiet => println!("{verb} {path}"),
            None => {}
        }
    }

    /// One planned transfer finished (whatever its outcome).
    pub fn item_done(&self) {
        if let Some(b) = &self.bars {
            b.items.inc(1);
        }
    }

    /// Bytes moved.
    pub fn bytes(&self, n: u64) {
        if let Some(b) = &self.bars {
            b.bytes.inc(n);
        }
    }

    /// A warning or failure: always shown, on stderr.
    pub fn warn(&self, msg: &str) {
        match &self.bars {
            Some(b) => {
                let _ = b.multi.println(format!("warning: {msg}"));
            }
            None => eprintln!("warning: {msg}"),
        }
    }

    /// The end of a sync: bars cleared, the summary printed.
    pub fn finish(&self, summary: &str) {
        if let Some(b) = &self.bars {
            b.items.finish_and_clear();
            b.bytes.finish_and_clear();
        }
        println!("{summary}");
    }
}
