//! The corpus replay: every file of every target's corpus (former crash inputs are kept
//! there too) through every target's harness, once. Fast; part of the normal test suite.

earshot_fuzz::tracking_allocator!();

use earshot_fuzz::engine::{fuzz_dir, load_corpus};
use earshot_fuzz::targets;

fn all_corpus_files() -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let corpus = fuzz_dir().join("corpus");
    let mut dirs: Vec<_> = std::fs::read_dir(&corpus)
        .expect("benches/fuzz/corpus")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        files.extend(load_corpus(&d).expect("corpus files"));
    }
    files
}

/// One test function: the engine counts panics process-wide, so nothing may run beside it.
#[test]
fn corpus_replay() {
    the_engine_catches_panics_and_memory();
    every_corpus_file_passes_every_target();
}

fn every_corpus_file_passes_every_target() {
    let files = all_corpus_files();
    assert!(files.len() >= 30, "only {} corpus files", files.len());
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    for t in targets::all() {
        let corpus = fuzz_dir().join("corpus").join(t.name);
        assert!(
            !load_corpus(&corpus).expect("corpus").is_empty(),
            "{} has no corpus",
            t.name
        );
        for (path, finding) in earshot_fuzz::replay(t, &files) {
            failures.push(format!("{} <- {}: {finding}", t.name, path.display()));
        }
    }
    assert!(failures.is_empty(), "findings:\n{}", failures.join("\n"));
    eprintln!(
        "{} corpus files x {} targets in {:?}",
        files.len(),
        targets::all().len(),
        started.elapsed()
    );
}

fn the_engine_catches_panics_and_memory() {
    use earshot_fuzz::engine::{Finding, Harness, Target, run_case};
    struct Boom;
    impl Harness for Boom {
        fn run(&mut self, data: &[u8]) -> String {
            if data == b"boom" {
                // A panic caught inside the code under test still counts.
                let _ = std::panic::catch_unwind(|| panic!("inner"));
            }
            if data == b"big" {
                let v = vec![1u8; 64 << 20];
                return v.len().to_string();
            }
            "ok".into()
        }
    }
    let _ = Target {
        name: "boom",
        about: "",
        dict: &[],
        max_len: 8,
        make: || Box::new(Boom),
    };
    let mut h = Boom;
    assert_eq!(run_case(&mut h, b"x", 1 << 30).outcome, Ok("ok".into()));
    assert!(matches!(
        run_case(&mut h, b"boom", 1 << 30).outcome,
        Err(Finding::Panic(m)) if m.contains("inner")
    ));
    assert!(matches!(
        run_case(&mut h, b"big", 32 << 20).outcome,
        Err(Finding::Memory(_))
    ));
}
