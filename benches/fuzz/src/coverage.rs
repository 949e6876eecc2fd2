//! Optional coverage guidance on stable Rust: LLVM's SanitizerCoverage with inline 8-bit
//! counters, switched on by building with
//!
//! ```text
//! RUSTFLAGS="-C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3 \
//!            -C llvm-args=-sanitizer-coverage-inline-8bit-counters"
//! ```
//!
//! (plus `--target x86_64-unknown-linux-gnu`, so build scripts and proc macros stay
//! uninstrumented). Every instrumented edge then increments a byte in a counter section, and
//! each module's constructor announces that section by calling
//! `__sanitizer_cov_8bit_counters_init(start, end)`, which [`coverage_hooks!`](crate::coverage_hooks)
//! defines in each fuzz binary. Without those flags nothing is announced and the engine runs as
//! a plain mutation fuzzer guided by distinct outcomes only.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

const MAX_REGIONS: usize = 256;

#[allow(clippy::declare_interior_mutable_const)]
const NULL: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicUsize = AtomicUsize::new(0);
static STARTS: [AtomicPtr<u8>; MAX_REGIONS] = [NULL; MAX_REGIONS];
static LENS: [AtomicUsize; MAX_REGIONS] = [ZERO; MAX_REGIONS];
static REGIONS: AtomicUsize = AtomicUsize::new(0);

/// Records a counter section. Runs in module constructors before `main`: no allocation.
pub fn register(start: *mut u8, end: *mut u8) {
    if start.is_null() || end <= start {
        return;
    }
    let len = end as usize - start as usize;
    let n = REGIONS.load(Ordering::Acquire).min(MAX_REGIONS);
    if STARTS[..n]
        .iter()
        .any(|s| s.load(Ordering::Relaxed) == start)
    {
        return;
    }
    let i = REGIONS.fetch_add(1, Ordering::AcqRel);
    if i < MAX_REGIONS {
        STARTS[i].store(start, Ordering::Relaxed);
        LENS[i].store(len, Ordering::Release);
    }
}

/// Defines the SanitizerCoverage callback in a fuzz binary (a binary's own objects are
/// always linked, so the instrumented dependencies find the symbol).
#[macro_export]
macro_rules! coverage_hooks {
    () => {
        /// SanitizerCoverage announces each module's inline 8-bit counters here.
        #[unsafe(no_mangle)]
        pub extern "C" fn __sanitizer_cov_8bit_counters_init(start: *mut u8, end: *mut u8) {
            $crate::coverage::register(start, end);
        }
    };
}

fn regions() -> Vec<&'static mut [u8]> {
    let n = REGIONS.load(Ordering::Acquire).min(MAX_REGIONS);
    (0..n)
        .filter_map(|i| {
            let p = STARTS[i].load(Ordering::Acquire);
            let len = LENS[i].load(Ordering::Acquire);
            // SAFETY: the section is static, `len` bytes long, and only ever written by
            // instrumented code as plain byte increments; racy counts only blur the feedback.
            (!p.is_null() && len > 0).then(|| unsafe { std::slice::from_raw_parts_mut(p, len) })
        })
        .collect()
}

/// AFL-style hit-count classes: a new class for an edge counts as new coverage.
fn class(count: u8) -> u8 {
    match count {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 4,
        4..=7 => 8,
        8..=15 => 16,
        16..=31 => 32,
        32..=127 => 64,
        _ => 128,
    }
}

/// The edges seen so far, by hit-count class.
pub struct Coverage {
    seen: Vec<Vec<u8>>,
    edges: usize,
}

impl Coverage {
    /// `None` when the binary was not built with coverage instrumentation.
    pub fn new() -> Option<Coverage> {
        let regions = regions();
        if regions.is_empty() {
            return None;
        }
        let seen = regions.iter().map(|r| vec![0u8; r.len()]).collect();
        let mut c = Coverage { seen, edges: 0 };
        c.reset();
        Some(c)
    }

    /// Counters in the binary (instrumented edges).
    pub fn size(&self) -> usize {
        self.seen.iter().map(Vec::len).sum()
    }

    /// Edges hit at least once so far.
    pub fn edges(&self) -> usize {
        self.edges
    }

    /// Forgets the counts since the last call (before a case).
    pub fn reset(&mut self) {
        for r in regions() {
            r.fill(0);
        }
    }

    /// Folds in the counts of the case just run and clears them; true if something new.
    pub fn collect(&mut self) -> bool {
        let mut new = false;
        for (r, seen) in regions().into_iter().zip(&mut self.seen) {
            let words = r.len() / 8;
            for w in 0..words {
                let chunk = &mut r[w * 8..w * 8 + 8];
                if u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8])) == 0 {
                    continue;
                }
                for (k, c) in chunk.iter_mut().enumerate() {
                    if *c != 0 {
                        let cl = class(*c);
                        let s = &mut seen[w * 8 + k];
                        if *s & cl == 0 {
                            if *s == 0 {
                                self.edges += 1;
                            }
                            *s |= cl;
                            new = true;
                        }
                        *c = 0;
                    }
                }
            }
            for i in words * 8..r.len() {
                if r[i] != 0 {
                    let cl = class(r[i]);
                    if seen[i] & cl == 0 {
                        if seen[i] == 0 {
                            self.edges += 1;
                        }
                        seen[i] |= cl;
                        new = true;
                    }
                    r[i] = 0;
                }
            }
        }
        new
    }
}
