//! PESQ-WB scoring: (reference, degraded) pairs written as WAVs, resampled to 16 kHz with sox
//! and scored in one batch by PyPI's `pesq` (scripts/pesq_wb.py).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::noise;

/// PESQ-WB jobs, scored in one batch.
pub(crate) struct Pesq {
    dir: PathBuf,
    pairs: Vec<(PathBuf, PathBuf)>,
}

fn write_wav(path: &Path, pcm: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for s in noise::to_i16(pcm) {
        w.write_sample(s).expect("sample");
    }
    w.finalize().expect("finalize");
}

impl Pesq {
    pub(crate) fn new(dir: &Path) -> Pesq {
        let dir = dir.join("pesq");
        std::fs::create_dir_all(&dir).expect("pesq dir");
        Pesq {
            dir,
            pairs: Vec::new(),
        }
    }

    /// Queues (reference, degraded), both 48 kHz; returns the job's index.
    pub(crate) fn add(&mut self, name: &str, reference: &[f32], degraded: &[f32]) -> usize {
        let i = self.pairs.len();
        let mut paths = Vec::new();
        for (kind, pcm) in [("ref", reference), ("deg", degraded)] {
            let wide = self.dir.join(format!("{i:03}-{name}-{kind}-48k.wav"));
            let narrow = self.dir.join(format!("{i:03}-{name}-{kind}.wav"));
            write_wav(&wide, pcm);
            let ok = Command::new("sox")
                .arg("-R")
                .arg(&wide)
                .args(["-r", "16000", "-b", "16"])
                .arg(&narrow)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "sox failed");
            paths.push(narrow);
        }
        let deg = paths.pop().expect("deg");
        let reference = paths.pop().expect("ref");
        self.pairs.push((reference, deg));
        i
    }

    pub(crate) fn run(&self) -> Vec<f64> {
        if self.pairs.is_empty() {
            return Vec::new();
        }
        let list = self.dir.join("pairs.tsv");
        let text: String = self
            .pairs
            .iter()
            .map(|(r, d)| format!("{}\t{}\n", r.display(), d.display()))
            .collect();
        std::fs::write(&list, text).expect("list");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pesq_wb.py");
        let out = Command::new("python3")
            .arg(script)
            .arg(&list)
            .stderr(Stdio::inherit())
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "pesq_wb.py failed (scripts/install-deps.sh --quality installs pesq)"
        );
        let scores: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().parse().unwrap_or(f64::NAN))
            .collect();
        assert_eq!(scores.len(), self.pairs.len(), "one score per pair");
        scores
    }
}
