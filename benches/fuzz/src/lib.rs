//! Fuzzing Earshot's parsers on stable Rust (no nightly, no libFuzzer): a mutation engine of
//! its own (`mutate`), a case runner that catches panics (also those caught inside the code
//! under test), slow cases, hangs and unbounded allocation (`engine`), optional
//! SanitizerCoverage guidance (`coverage`), and the targets (`targets`, `api`). The corpus of
//! each target is `corpus/<target>/`; findings are saved to `crashes/<target>/`.
//!
//! Run: `cargo run --release -p earshot-fuzz -- <target> --cases 1000000` (see README,
//! "Fuzzing"). The corpus replay (`tests/replay.rs`) runs in the normal test suite.

pub mod api;
pub mod coverage;
pub mod engine;
pub mod mutate;
pub mod targets;

pub use engine::{Finding, Harness, Options, Report, Target, fuzz, replay};

/// Command line shared by the fuzz binaries: `<target>... [--cases N] [--seconds S]
/// [--seed N] [--keep-going] [--save-new DIR] [--slow-ms MS] [--timeout-secs S]
/// [--mem-limit-mib MIB]`. Runs each named target (`all` = every one in `targets`) and
/// returns the process exit code (1 if anything was found).
pub fn main_with(args: &[String], targets: &'static [Target]) -> i32 {
    let usage = || {
        eprintln!(
            "usage: earshot-fuzz <target>... | all [--cases N] [--seconds S] [--seed N] \
             [--keep-going] [--save-new DIR] [--slow-ms MS] [--timeout-secs S] [--mem-limit-mib MIB]\n\
             \x20      earshot-fuzz <target> --replay FILE... (one run each: outcome, time, memory)\n\
             targets:"
        );
        for t in targets {
            eprintln!("  {:10} {}", t.name, t.about);
        }
    };
    let mut names: Vec<&str> = Vec::new();
    let mut cases: Option<u64> = None;
    let mut seconds: Option<f64> = None;
    let mut seed: Option<u64> = None;
    let mut keep_going = false;
    let mut replay_files = false;
    let mut save_new = None;
    let mut slow_ms: Option<u64> = None;
    let mut timeout: Option<u64> = None;
    let mut mem: Option<usize> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| -> Option<String> {
            let v = it.next().cloned();
            if v.is_none() {
                eprintln!("{what} needs a value");
            }
            v
        };
        match a.as_str() {
            "--cases" => cases = value("--cases").and_then(|v| v.replace('_', "").parse().ok()),
            "--seconds" => seconds = value("--seconds").and_then(|v| v.parse().ok()),
            "--seed" => seed = value("--seed").and_then(|v| v.parse().ok()),
            "--keep-going" => keep_going = true,
            "--replay" => replay_files = true,
            "--save-new" => save_new = value("--save-new").map(std::path::PathBuf::from),
            "--slow-ms" => slow_ms = value("--slow-ms").and_then(|v| v.parse().ok()),
            "--timeout-secs" => timeout = value("--timeout-secs").and_then(|v| v.parse().ok()),
            "--mem-limit-mib" => mem = value("--mem-limit-mib").and_then(|v| v.parse().ok()),
            "-h" | "--help" => {
                usage();
                return 0;
            }
            s if s.starts_with('-') => {
                eprintln!("unknown option {s}");
                usage();
                return 2;
            }
            s => names.push(s),
        }
    }
    if let Some(mib) = std::env::var("EARSHOT_FUZZ_TRACE_ALLOC_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        engine::trace_allocations_over(mib << 20);
    }
    if replay_files {
        let Some(t) = names
            .first()
            .and_then(|n| targets.iter().find(|t| t.name == *n))
        else {
            usage();
            return 2;
        };
        return replay_each(t, &names[1..]);
    }
    let chosen: Vec<&'static Target> = if names == ["all"] {
        targets.iter().collect()
    } else {
        let mut v = Vec::new();
        for n in &names {
            match targets.iter().find(|t| t.name == *n) {
                Some(t) => v.push(t),
                None => {
                    eprintln!("unknown target {n}");
                    usage();
                    return 2;
                }
            }
        }
        v
    };
    if chosen.is_empty() {
        usage();
        return 2;
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut failed = false;
    for t in chosen {
        let mut opts = Options::new(t.name);
        opts.cases = cases;
        opts.seconds = seconds;
        opts.seed = seed;
        opts.keep_going = keep_going;
        opts.save_new = save_new.as_ref().map(|d| d.join(t.name));
        if let Some(ms) = slow_ms {
            opts.slow = Some(std::time::Duration::from_millis(ms));
        }
        if let Some(s) = timeout {
            opts.timeout = std::time::Duration::from_secs(s);
        }
        if let Some(m) = mem {
            opts.mem_limit = m << 20;
        }
        eprintln!(
            "[{}] seed {seed}; corpus {}",
            t.name,
            opts.corpus_dir.display()
        );
        match fuzz(t, &opts) {
            Ok(report) => {
                println!("{report}");
                failed |= report.failed();
            }
            Err(e) => {
                eprintln!("[{}] {e}", t.name);
                failed = true;
            }
        }
    }
    i32::from(failed)
}

/// `--replay`: each file through `target` once, with its outcome, time and peak memory.
fn replay_each(target: &Target, files: &[&str]) -> i32 {
    let mut harness = (target.make)();
    let mut failed = false;
    for f in files {
        let data = match std::fs::read(f) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{f}: {e}");
                failed = true;
                continue;
            }
        };
        let r = engine::run_case(harness.as_mut(), &data, usize::MAX);
        let outcome = match &r.outcome {
            Ok(o) => o.clone(),
            Err(finding) => {
                failed = true;
                harness = (target.make)();
                format!("FINDING {finding}")
            }
        };
        println!(
            "{f}: {outcome} ({:.1} ms, {:.1} ms of CPU, peak {:.1} MiB)",
            r.elapsed.as_secs_f64() * 1e3,
            r.cpu.as_secs_f64() * 1e3,
            r.peak_bytes as f64 / f64::from(1 << 20)
        );
    }
    i32::from(failed)
}
