//! The master key ring of encryption at rest: from `[encryption] master_keys` (in practice
//! `EARSHOT_ENCRYPTION_MASTER_KEYS`), else the key file (default `<data_dir>/master_keys`,
//! generated 0600 on the first start, like `admin_token`); and the `earshot keys` commands:
//! `rotate` (a new current key, then every recording's data key rewrapped under it), `rewrap`
//! (the rewrap alone) and `remove` (an old key, once no file needs it).

use crate::config::EncryptionConfig;
use crate::secrets;
use anyhow::{Context, bail};
use earshot_media::recorder::Sealing;
use earshot_sealed::KeyRing;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the key ring came from (logged at start; keys never are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `[encryption] master_keys` (the environment).
    Inline,
    File(PathBuf),
    /// Generated now and stored in this file.
    Generated(PathBuf),
    /// Encryption off and no key file: recordings are plain.
    None,
}

/// The ring the server runs with and what it does with it.
pub fn load(
    cfg: &EncryptionConfig,
    data_dir: &Path,
) -> anyhow::Result<(Option<Sealing>, KeySource)> {
    let sealing = |ring: KeyRing| {
        Some(Sealing {
            keys: Arc::new(ring),
            seal_new: cfg.enabled,
        })
    };
    if let Some(inline) = &cfg.master_keys {
        let ring = KeyRing::parse_inline(inline).context("encryption.master_keys")?;
        return Ok((sealing(ring), KeySource::Inline));
    }
    let path = cfg.key_file_path(data_dir);
    match read_ring(&path) {
        Ok(Some(ring)) => Ok((sealing(ring), KeySource::File(path))),
        Ok(None) if cfg.enabled => {
            let ring = KeyRing::generate("k1")?;
            secrets::write_private(&path, ring.to_text().as_bytes())?;
            Ok((sealing(ring), KeySource::Generated(path)))
        }
        Ok(None) => Ok((None, KeySource::None)),
        Err(e) => Err(e),
    }
}

/// The key file's ring; `None` when there is no file.
fn read_ring(path: &Path) -> anyhow::Result<Option<KeyRing>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let ring = KeyRing::parse(&text)
                .with_context(|| format!("encryption.key_file {}", path.display()))?;
            secrets::restrict(path, 0o600)?;
            Ok(Some(ring))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e)
            .with_context(|| format!("encryption.key_file {}: cannot be read", path.display())),
    }
}

/// Replaces the key file with `ring` (a new 0600 file renamed over it: never half written).
fn save_ring(path: &Path, ring: &KeyRing) -> anyhow::Result<()> {
    let tmp = path.with_extension("new");
    secrets::write_private(&tmp, ring.to_text().as_bytes())?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

/// The key file the `keys` commands change; keys given inline are the operator's to change.
fn key_file(cfg: &EncryptionConfig, data_dir: &Path) -> anyhow::Result<PathBuf> {
    if cfg.master_keys.is_some() {
        bail!(
            "the master keys come from encryption.master_keys (EARSHOT_ENCRYPTION_MASTER_KEYS): \
             put the new key first there, restart, and run `earshot keys rewrap`"
        );
    }
    Ok(cfg.key_file_path(data_dir))
}

fn ring_of(cfg: &EncryptionConfig, data_dir: &Path) -> anyhow::Result<KeyRing> {
    if let Some(inline) = &cfg.master_keys {
        return KeyRing::parse_inline(inline).context("encryption.master_keys");
    }
    let path = cfg.key_file_path(data_dir);
    read_ring(&path)?.with_context(|| format!("no key file at {}", path.display()))
}

/// Every file of every session folder under `<data_dir>/recordings`.
fn recording_files(data_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let root = data_dir.join("recordings");
    let mut files = Vec::new();
    let sessions = match std::fs::read_dir(&root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e).with_context(|| format!("listing {}", root.display())),
    };
    for session in sessions {
        let session = session?.path();
        if !session.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&session)? {
            let file = file?.path();
            if file.is_file() {
                files.push(file);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// What a rewrap did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rewrapped {
    /// Files whose data key is now wrapped by the current key (and were not before).
    pub rewrapped: usize,
    /// Sealed files already under the current key.
    pub current: usize,
    /// Plain files (made with encryption off, or before it), left as they are.
    pub plain: usize,
}

/// Rewraps every sealed recording's data key under the ring's current key (only headers are
/// written). A file that does not open stops nothing: all are tried, then it is an error.
pub fn rewrap(cfg: &EncryptionConfig, data_dir: &Path) -> anyhow::Result<Rewrapped> {
    let ring = ring_of(cfg, data_dir)?;
    let mut done = Rewrapped::default();
    let mut failed = Vec::new();
    for file in recording_files(data_dir)? {
        match earshot_sealed::rewrap_file(&file, &ring) {
            Ok(None) => done.plain += 1,
            Ok(Some(before)) if before == ring.current_id() => done.current += 1,
            Ok(Some(_)) => done.rewrapped += 1,
            Err(e) => failed.push(format!("{}: {e}", file.display())),
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} file(s) could not be rewrapped ({} were):\n{}",
            failed.len(),
            done.rewrapped,
            failed.join("\n")
        );
    }
    Ok(done)
}

/// Adds a new current key (`id`, default the next `k<n>`) to the key file, then rewraps
/// every recording under it. The file is saved first: if the rewrap stops half way, every
/// file still opens with one of the ring's keys and `rewrap` finishes the work.
pub fn rotate(
    cfg: &EncryptionConfig,
    data_dir: &Path,
    id: Option<String>,
) -> anyhow::Result<(String, Rewrapped)> {
    let path = key_file(cfg, data_dir)?;
    let mut ring =
        read_ring(&path)?.with_context(|| format!("no key file at {}", path.display()))?;
    let id = id.unwrap_or_else(|| next_id(&ring));
    ring.add_current(&id)?;
    save_ring(&path, &ring)?;
    let done = rewrap(cfg, data_dir)?;
    Ok((id, done))
}

/// `k<n+1>` for the highest `k<n>` in the ring.
fn next_id(ring: &KeyRing) -> String {
    let n = ring
        .ids()
        .filter_map(|id| id.strip_prefix('k')?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    format!("k{}", n + 1)
}

/// Removes key `id` from the key file, refusing while any recording is still sealed under it.
pub fn remove(cfg: &EncryptionConfig, data_dir: &Path, id: &str) -> anyhow::Result<()> {
    let path = key_file(cfg, data_dir)?;
    let mut ring =
        read_ring(&path)?.with_context(|| format!("no key file at {}", path.display()))?;
    // In memory first: the current key or an unknown id are refused before any file is read.
    ring.remove(id)?;
    let mut still = 0usize;
    for file in recording_files(data_dir)? {
        if earshot_sealed::key_id_of(&file)?.as_deref() == Some(id) {
            still += 1;
        }
    }
    if still > 0 {
        bail!(
            "{still} recording file(s) are still sealed under key {id:?}: run `earshot keys \
             rewrap` (with the server restarted on the new key) first"
        );
    }
    save_ring(&path, &ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_generated_once_private_and_refused_when_broken() {
        let dir = tempfile::tempdir().expect("dir");
        let cfg = EncryptionConfig::default();
        let (first, source) = load(&cfg, dir.path()).expect("generated");
        let path = dir.path().join("master_keys");
        assert_eq!(source, KeySource::Generated(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (again, source) = load(&cfg, dir.path()).expect("read");
        assert_eq!(source, KeySource::File(path.clone()));
        let (first, again) = (first.expect("ring"), again.expect("ring"));
        let sealed = first.keys.seal_field(b"x", b"c").expect("seal");
        assert_eq!(
            again.keys.open_field(&sealed, b"c").expect("same key"),
            b"x"
        );

        std::fs::write(&path, "current k1\nkey k1 short\n").expect("write");
        let err = format!("{:#}", load(&cfg, dir.path()).unwrap_err());
        assert!(
            err.contains("encryption.key_file") && err.contains("base64"),
            "{err}"
        );

        // Off, with no key file: plain recordings, nothing made.
        let off = EncryptionConfig {
            enabled: false,
            ..EncryptionConfig::default()
        };
        let empty = tempfile::tempdir().expect("dir");
        assert_eq!(load(&off, empty.path()).expect("off").1, KeySource::None);
        assert!(!empty.path().join("master_keys").exists());
    }

    /// A sealed file under `ring`'s current key in a session folder of `data_dir`.
    fn sealed_file(data_dir: &Path, name: &str, ring: &KeyRing) -> PathBuf {
        use std::io::Write;
        let dir = data_dir.join("recordings").join("ses_one");
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        let mut w =
            earshot_sealed::SealedWriter::create(&path, ring, earshot_sealed::Content::Bytes)
                .expect("create");
        w.write_all(b"audio").expect("write");
        w.finish().expect("finish");
        path
    }

    #[test]
    fn rotation_rewraps_every_file_and_an_old_key_goes_only_when_unused() {
        let dir = tempfile::tempdir().expect("dir");
        let cfg = EncryptionConfig::default();
        let ring = load(&cfg, dir.path())
            .expect("generated")
            .0
            .expect("ring")
            .keys;
        let sealed = sealed_file(dir.path(), "ai.wav", &ring);
        std::fs::write(dir.path().join("recordings/ses_one/old.wav"), b"RIFF").expect("plain");
        // A key added by hand (no rewrap): k1 is still needed, so it stays.
        let path = dir.path().join("master_keys");
        let mut by_hand =
            KeyRing::parse(&std::fs::read_to_string(&path).expect("read")).expect("parse");
        by_hand.add_current("k2").expect("add");
        save_ring(&path, &by_hand).expect("save");
        let err = remove(&cfg, dir.path(), "k1").unwrap_err().to_string();
        assert!(
            err.contains("1 recording file(s) are still sealed"),
            "{err}"
        );
        assert!(err.contains("rewrap"), "{err}");
        // rewrap, then k1 can go and the file still opens.
        let done = rewrap(&cfg, dir.path()).expect("rewrap");
        assert_eq!(
            done,
            Rewrapped {
                rewrapped: 1,
                current: 0,
                plain: 1
            }
        );
        remove(&cfg, dir.path(), "k1").expect("removed");
        let ring = ring_of(&cfg, dir.path()).expect("ring");
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["k2"]);
        let r =
            earshot_sealed::SealedReader::open(std::fs::File::open(&sealed).expect("open"), &ring)
                .expect("opens under k2");
        assert_eq!(r.key_id(), "k2");
        // rotate: a new key k3, every file under it.
        let (id, done) = rotate(&cfg, dir.path(), None).expect("rotate");
        assert_eq!((id.as_str(), done.rewrapped, done.plain), ("k3", 1, 1));
        assert!(
            remove(&cfg, dir.path(), "k3").is_err(),
            "the current key stays"
        );
        // A file under a key the ring does not have: every other file is done, then an error.
        let stranger = KeyRing::generate("zz").expect("ring");
        sealed_file(dir.path(), "stranger.wav", &stranger);
        let err = format!("{:#}", rewrap(&cfg, dir.path()).unwrap_err());
        assert!(
            err.contains("stranger.wav") && err.contains("\"zz\""),
            "{err}"
        );
        // Keys from the environment are not the key file's to change.
        let inline = EncryptionConfig {
            master_keys: Some(format!("k1:{}", "A".repeat(43) + "=")),
            ..EncryptionConfig::default()
        };
        assert!(rotate(&inline, dir.path(), None).is_err());
    }

    #[test]
    fn next_ids_count_up() {
        let mut ring = KeyRing::generate("k1").expect("ring");
        assert_eq!(next_id(&ring), "k2");
        ring.add_current("k7").expect("add");
        ring.add_current("spring").expect("add");
        assert_eq!(next_id(&ring), "k8");
    }
}
