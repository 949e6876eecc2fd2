//! Running cases: each under `catch_unwind` with a panic hook that also sees panics caught
//! inside the code under test (and in other threads), a clock (slow cases, a watchdog for
//! hangs) and an allocation meter (unbounded memory); the fuzz loop around it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use crate::coverage::Coverage;
use crate::mutate::{Mutator, Rng};

/// One target's harness: feeds one input to the real code and names the outcome (a short
/// signature such as `ok` or `err:invalid_json`; a new outcome makes the input interesting).
pub trait Harness {
    fn run(&mut self, data: &[u8]) -> String;
}

/// A fuzz target.
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    /// Protocol tokens the mutator inserts.
    pub dict: &'static [&'static [u8]],
    /// Longest input generated.
    pub max_len: usize,
    pub make: fn() -> Box<dyn Harness>,
}

/// What went wrong with one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// A panic (also one caught by the code under test, or in another thread).
    Panic(String),
    /// The case allocated more than the limit above what was live before it.
    Memory(usize),
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Panic(m) => write!(f, "panic: {m}"),
            Finding::Memory(b) => write!(f, "allocated {} MiB in one case", b >> 20),
        }
    }
}

/// The outcome of one case.
pub struct CaseResult {
    pub outcome: Result<String, Finding>,
    /// Wall time.
    pub elapsed: Duration,
    /// CPU time of the whole process (all threads) during the case: what "slow" is judged on,
    /// since wall time on a shared machine also counts waiting for a core.
    pub cpu: Duration,
    /// Peak bytes allocated by the case above what was live at its start.
    pub peak_bytes: usize,
}

// ---------------------------------------------------------------------------------------------
// Panics
// ---------------------------------------------------------------------------------------------

static PANICS: AtomicU64 = AtomicU64::new(0);
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// While a case runs: counts every panic (wherever it is caught) and keeps its message,
/// printing nothing. Outside cases panics are reported as usual (the previous hook).
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CASE_START.load(Ordering::SeqCst) == 0 {
                previous(info);
                return;
            }
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let thread = std::thread::current()
                .name()
                .map(|n| format!(" (thread {n})"))
                .unwrap_or_default();
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = Some(format!("{msg}{at}{thread}"));
            }
            PANICS.fetch_add(1, Ordering::SeqCst);
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Live bytes past which the process stops (after saving the input): far above any sane case.
const HARD_LIMIT: usize = 4 << 30;
static OVER_LIMIT: AtomicBool = AtomicBool::new(false);

/// The system allocator with a meter: fuzz binaries install it as their global allocator.
pub struct TrackingAlloc;

/// Allocations of at least this many bytes print a backtrace (0 = off): triage of memory
/// findings (`EARSHOT_FUZZ_TRACE_ALLOC_MIB`).
static TRACE_ALLOC: AtomicUsize = AtomicUsize::new(0);

/// Prints a backtrace for every allocation of at least `bytes` (0 turns it off).
pub fn trace_allocations_over(bytes: usize) {
    TRACE_ALLOC.store(bytes, Ordering::Relaxed);
}

thread_local! {
    static IN_TRACE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn trace(size: usize) {
    let limit = TRACE_ALLOC.load(Ordering::Relaxed);
    if limit == 0 || size < limit || IN_TRACE.with(std::cell::Cell::get) {
        return;
    }
    IN_TRACE.with(|t| t.set(true));
    eprintln!(
        "allocation of {} MiB:\n{}",
        size >> 20,
        std::backtrace::Backtrace::force_capture()
    );
    IN_TRACE.with(|t| t.set(false));
}

fn grew(n: usize) {
    trace(n);
    let now = ALLOCATED.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
    if now > HARD_LIMIT && !OVER_LIMIT.swap(true, Ordering::SeqCst) {
        save_current("oom");
        eprintln!(
            "earshot-fuzz: over {} GiB allocated: aborting",
            HARD_LIMIT >> 30
        );
        std::process::exit(3);
    }
}

// SAFETY: every call is forwarded to `System`; only counters are added.
unsafe impl GlobalAlloc for TrackingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                ALLOCATED.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Installs [`TrackingAlloc`] as the global allocator of a fuzz binary (without it the memory
/// limit is not enforced: every case reads as allocating nothing).
#[macro_export]
macro_rules! tracking_allocator {
    () => {
        #[global_allocator]
        static FUZZ_ALLOCATOR: $crate::engine::TrackingAlloc = $crate::engine::TrackingAlloc;
    };
}

// ---------------------------------------------------------------------------------------------
// The current case (for the watchdog and the memory limit, which must save it)
// ---------------------------------------------------------------------------------------------

static CURRENT: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static CRASH_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
/// Start of the running case in ns since [`epoch`]; 0 = no case running.
static CASE_START: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn save_current(kind: &str) {
    let data = CURRENT.lock().map(|d| d.clone()).unwrap_or_default();
    let dir = CRASH_DIR.lock().ok().and_then(|d| d.clone());
    if let Some(dir) = dir {
        match save_input(&dir, kind, &data) {
            Ok(path) => eprintln!("earshot-fuzz: {kind} input saved to {}", path.display()),
            Err(e) => eprintln!("earshot-fuzz: cannot save the {kind} input: {e}"),
        }
    }
}

/// Saves an input as `<dir>/<kind>-<hash>`.
pub fn save_input(dir: &Path, kind: &str, data: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{kind}-{:016x}", fnv1a(data)));
    std::fs::write(&path, data)?;
    Ok(path)
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Stops the process if a case runs longer than `timeout` (saving it as `hang-*`).
fn start_watchdog(timeout: Duration) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("fuzz-watchdog".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_millis(250));
                    let start = CASE_START.load(Ordering::SeqCst);
                    if start == 0 {
                        continue;
                    }
                    let now = epoch().elapsed().as_nanos() as u64;
                    if now.saturating_sub(start) > timeout.as_nanos() as u64 {
                        save_current("hang");
                        eprintln!("earshot-fuzz: a case ran over {timeout:?}: stopping");
                        std::process::exit(4);
                    }
                }
            });
    });
}

/// CPU time used by the process so far.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out-pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs one input through a harness, watching for panics, time and memory.
pub fn run_case(harness: &mut dyn Harness, data: &[u8], mem_limit: usize) -> CaseResult {
    install_panic_hook();
    if let Ok(mut cur) = CURRENT.lock() {
        cur.clear();
        cur.extend_from_slice(data);
    }
    let panics = PANICS.load(Ordering::SeqCst);
    let live = ALLOCATED.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    let cpu_start = process_cpu();
    let start = Instant::now();
    CASE_START.store((start - epoch()).as_nanos().max(1) as u64, Ordering::SeqCst);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| harness.run(data)));
    CASE_START.store(0, Ordering::SeqCst);
    let elapsed = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_start);
    let peak_bytes = PEAK.load(Ordering::Relaxed).saturating_sub(live);
    let last_panic = || {
        LAST_PANIC
            .lock()
            .ok()
            .and_then(|p| p.clone())
            .unwrap_or_default()
    };
    let outcome = match result {
        Err(_) => Err(Finding::Panic(last_panic())),
        Ok(_) if PANICS.load(Ordering::SeqCst) != panics => {
            Err(Finding::Panic(format!("caught inside: {}", last_panic())))
        }
        Ok(_) if peak_bytes > mem_limit => Err(Finding::Memory(peak_bytes)),
        Ok(o) => Ok(o),
    };
    CaseResult {
        outcome,
        elapsed,
        cpu,
        peak_bytes,
    }
}

/// Turns an error message into a short outcome signature: digits folded, cut short, so that
/// inputs differing only in numbers or echoed text do not all count as new.
pub fn signature(prefix: &str, detail: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 40);
    s.push_str(prefix);
    s.push(':');
    let mut last_digit = false;
    let mut colons = 0;
    for c in detail.chars().take(36) {
        // Error texts often echo the input after their second colon.
        if c == ':' {
            colons += 1;
            if colons == 2 {
                break;
            }
        }
        if matches!(c, '`' | '"' | '\'' | '(' | '[' | '{' | '\n' | '|') {
            break;
        }
        if c.is_ascii_digit() {
            if !last_digit {
                s.push('#');
            }
            last_digit = true;
        } else {
            s.push(c);
            last_digit = false;
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Corpus
// ---------------------------------------------------------------------------------------------

/// The files of a corpus directory, sorted by name (none if it does not exist).
pub fn load_corpus(dir: &Path) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_file() {
            let data = std::fs::read(&path)?;
            files.push((path, data));
        }
    }
    files.sort();
    Ok(files)
}

/// The fuzz crate's directory (corpus/ and crashes/ live there).
pub fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// The fuzz loop
// ---------------------------------------------------------------------------------------------

/// How long and how to fuzz.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop after this many cases...
    pub cases: Option<u64>,
    /// ... or after this many seconds, whichever comes first (neither: 100 000 cases).
    pub seconds: Option<f64>,
    pub seed: u64,
    pub corpus_dir: PathBuf,
    pub crash_dir: PathBuf,
    /// Cases slower than this are reported (and saved as `slow-*`); `None`: 100 ms, or 400 ms
    /// in a coverage build (its counters slow hot loops such as resampling about 3 times).
    pub slow: Option<Duration>,
    /// A case running longer than this stops the run (saved as `hang-*`).
    pub timeout: Duration,
    /// Bytes one case may allocate above what was live before it.
    pub mem_limit: usize,
    /// Go on after a panic (default: stop at the first one).
    pub keep_going: bool,
    /// Save inputs that found something new (coverage or outcome) here.
    pub save_new: Option<PathBuf>,
    /// Progress line interval.
    pub progress: Duration,
}

impl Options {
    pub fn new(target: &str) -> Options {
        let dir = fuzz_dir();
        Options {
            cases: None,
            seconds: None,
            seed: 1,
            corpus_dir: dir.join("corpus").join(target),
            crash_dir: dir.join("crashes").join(target),
            slow: None,
            timeout: Duration::from_secs(10),
            mem_limit: 512 << 20,
            keep_going: false,
            save_new: None,
            progress: Duration::from_secs(10),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: &'static str,
    pub cases: u64,
    pub elapsed: Duration,
    pub panics: u64,
    pub memory: u64,
    /// Cases over the slow threshold (CPU time) twice in a row (first run and a re-run).
    pub slow: u64,
    /// CPU time of the slowest case (the smaller of its two runs, if it was re-run).
    pub slowest: Duration,
    pub peak_case_bytes: usize,
    pub seeds: usize,
    pub corpus: usize,
    pub outcomes: usize,
    /// `(edges hit, instrumented edges)` when built with coverage.
    pub coverage: Option<(usize, usize)>,
}

impl Report {
    pub fn cases_per_sec(&self) -> f64 {
        self.cases as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn failed(&self) -> bool {
        self.panics > 0 || self.memory > 0
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target={} cases={} seconds={:.1} cases_per_s={:.0} panics={} memory={} slow={} \
             slowest_cpu_ms={:.1} peak_case_mib={:.1} seeds={} corpus={} outcomes={}",
            self.target,
            self.cases,
            self.elapsed.as_secs_f64(),
            self.cases_per_sec(),
            self.panics,
            self.memory,
            self.slow,
            self.slowest.as_secs_f64() * 1e3,
            self.peak_case_bytes as f64 / f64::from(1 << 20),
            self.seeds,
            self.corpus,
            self.outcomes,
        )?;
        match self.coverage {
            Some((hit, all)) => write!(f, " edges={hit}/{all}"),
            None => write!(f, " edges=uninstrumented"),
        }
    }
}

/// Most inputs kept in memory (seeds are never dropped).
const MAX_CORPUS: usize = 4096;

/// Fuzzes one target.
pub fn fuzz(target: &Target, opts: &Options) -> std::io::Result<Report> {
    install_panic_hook();
    start_watchdog(opts.timeout);
    if let Ok(mut d) = CRASH_DIR.lock() {
        *d = Some(opts.crash_dir.clone());
    }
    let seeds = load_corpus(&opts.corpus_dir)?;
    let mut corpus: Vec<Vec<u8>> = seeds.into_iter().map(|(_, d)| d).collect();
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let n_seeds = corpus.len();
    let mut harness = (target.make)();
    let mut coverage = Coverage::new();
    let slow = opts
        .slow
        .unwrap_or(Duration::from_millis(if coverage.is_some() {
            400
        } else {
            100
        }));
    let mut outcomes: HashSet<String> = HashSet::new();
    let mut mutator = Mutator::new(opts.seed, target.dict, target.max_len);
    let mut pick = Rng::new(opts.seed ^ 0x5eed);
    let mut report = Report {
        target: target.name,
        cases: 0,
        elapsed: Duration::ZERO,
        panics: 0,
        memory: 0,
        slow: 0,
        slowest: Duration::ZERO,
        peak_case_bytes: 0,
        seeds: n_seeds,
        corpus: 0,
        outcomes: 0,
        coverage: None,
    };
    let max_cases = opts.cases.unwrap_or(if opts.seconds.is_some() {
        u64::MAX
    } else {
        100_000
    });
    let deadline = opts.seconds.map(|s| Duration::from_secs_f64(s.max(0.0)));
    let started = Instant::now();
    let mut last_progress = started;

    // The seeds first, unmutated; then mutations.
    let mut i = 0u64;
    while i < max_cases {
        if deadline.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let input = if (i as usize) < n_seeds {
            corpus[i as usize].clone()
        } else {
            let a = pick.below(corpus.len());
            let b = pick.below(corpus.len());
            mutator.mutate(&corpus[a], &corpus[b])
        };
        if let Some(c) = coverage.as_mut() {
            c.reset();
        }
        let r = run_case(harness.as_mut(), &input, opts.mem_limit);
        i += 1;
        report.cases = i;
        report.peak_case_bytes = report.peak_case_bytes.max(r.peak_bytes);
        let mut new = coverage.as_mut().is_some_and(Coverage::collect);
        match r.outcome {
            Ok(o) => new |= outcomes.insert(o),
            Err(finding) => {
                let kind = match finding {
                    Finding::Panic(_) => {
                        report.panics += 1;
                        "panic"
                    }
                    Finding::Memory(_) => {
                        report.memory += 1;
                        "memory"
                    }
                };
                let path = save_input(&opts.crash_dir, kind, &input)?;
                eprintln!(
                    "[{}] case {i}: {finding}\n  input saved to {}",
                    target.name,
                    path.display()
                );
                // The harness may be left in a broken state: start a fresh one.
                harness = (target.make)();
                if !opts.keep_going {
                    break;
                }
            }
        }
        if r.cpu > slow {
            // Confirm on a second run (the first may have paid for a lazy initialisation).
            let again = run_case(harness.as_mut(), &input, opts.mem_limit);
            if again.cpu > slow {
                report.slow += 1;
                let path = save_input(&opts.crash_dir, "slow", &input)?;
                eprintln!(
                    "[{}] case {i}: slow, {:.0} ms then {:.0} ms of CPU; input saved to {}",
                    target.name,
                    r.cpu.as_secs_f64() * 1e3,
                    again.cpu.as_secs_f64() * 1e3,
                    path.display()
                );
            }
            report.slowest = report.slowest.max(again.cpu.min(r.cpu));
        } else {
            report.slowest = report.slowest.max(r.cpu);
        }
        if new && (i as usize) > n_seeds {
            if let Some(dir) = &opts.save_new {
                save_input(dir, "new", &input)?;
            }
            if corpus.len() < MAX_CORPUS {
                corpus.push(input);
            } else {
                let j = n_seeds + pick.below(MAX_CORPUS - n_seeds);
                corpus[j] = input;
            }
        }
        if last_progress.elapsed() >= opts.progress {
            last_progress = Instant::now();
            report.elapsed = started.elapsed();
            report.corpus = corpus.len();
            report.outcomes = outcomes.len();
            report.coverage = coverage.as_ref().map(|c| (c.edges(), c.size()));
            eprintln!("[{}] {report}", target.name);
        }
    }
    report.elapsed = started.elapsed();
    report.corpus = corpus.len();
    report.outcomes = outcomes.len();
    report.coverage = coverage.as_ref().map(|c| (c.edges(), c.size()));
    Ok(report)
}

/// Runs every file of `dirs` through `target` once; the findings with their file names.
pub fn replay(target: &Target, files: &[(PathBuf, Vec<u8>)]) -> Vec<(PathBuf, Finding)> {
    let mut harness = (target.make)();
    let mut found = Vec::new();
    for (path, data) in files {
        if let Err(f) = run_case(harness.as_mut(), data, 512 << 20).outcome {
            found.push((path.clone(), f));
            harness = (target.make)();
        }
    }
    found
}
