//! Where a script's prompt audio may come from: files inside the configured prompts
//! directories, named relative to them. A name is refused if it is absolute, climbs out with
//! `..`, or resolves (through symlinks) to a file outside the directory it was found in; so
//! an admin request can never make the server read, and later name to participants, an
//! arbitrary file such as `/etc/shadow`.

use std::path::{Component, Path, PathBuf};

/// Longest prompt file name accepted (bytes).
pub const MAX_NAME_BYTES: usize = 255;
/// File types the built-in interviewer decodes.
pub const EXTENSIONS: [&str; 2] = ["wav", "flac"];

/// Why a prompt name was refused. Messages name what was given, never a server path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("must be a file name relative to the prompts directory (e.g. \"q1.wav\")")]
    NotRelative,
    #[error("must end in .wav or .flac")]
    Extension,
    #[error("is not a file in the prompts directory")]
    NotFound,
    #[error("leads outside the prompts directory")]
    Escapes,
}

/// The prompts directories, searched in order: the operator's, then the one holding the
/// built-in prompts (`default/greeting.wav`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptDirs {
    roots: Vec<PathBuf>,
}

impl PromptDirs {
    /// `roots` in search order; repeats are dropped.
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> PromptDirs {
        let mut out: Vec<PathBuf> = Vec::new();
        for root in roots {
            if !out.contains(&root) {
                out.push(root);
            }
        }
        PromptDirs { roots: out }
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The absolute path of prompt file `name`: the first directory holding it wins.
    pub async fn resolve(&self, name: &str) -> Result<PathBuf, PromptError> {
        let relative = check_name(name)?;
        let mut escaped = false;
        for root in &self.roots {
            // Canonical forms on both sides: a symlink inside the directory that points out
            // of it resolves to a path outside the canonical root and is refused.
            let Ok(root) = tokio::fs::canonicalize(root).await else {
                continue;
            };
            let Ok(path) = tokio::fs::canonicalize(root.join(relative)).await else {
                continue;
            };
            if !path.starts_with(&root) {
                escaped = true;
                continue;
            }
            if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
                return Ok(path);
            }
        }
        Err(if escaped {
            PromptError::Escapes
        } else {
            PromptError::NotFound
        })
    }
}

/// Folder of the first prompts directory that uploaded prompt audio goes to.
pub const UPLOADS: &str = "uploads";
/// Longest uploaded file name (bytes).
pub const MAX_UPLOAD_NAME_BYTES: usize = 100;

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the name must be 1-100 lowercase letters, digits, '_' or '-', then .wav or .flac")]
    Name,
    #[error("the body is not a WAV (RIFF/WAVE) or FLAC file matching the name's extension")]
    Content,
    #[error("there is no prompts directory to store it in")]
    NoDirectory,
    #[error("storing the file failed: {0}")]
    Io(#[from] std::io::Error),
}

impl PromptDirs {
    /// Stores uploaded prompt audio as `uploads/<name>` in the first prompts directory
    /// (replacing a file of that name) and returns the name scripts use for it
    /// (`uploads/<name>`). Only the container is checked here (a WAV or FLAC header); the
    /// media plane decodes it when a session plays it.
    pub async fn store_upload(&self, name: &str, bytes: &[u8]) -> Result<String, UploadError> {
        let (stem, ext) = name.rsplit_once('.').ok_or(UploadError::Name)?;
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        if name.len() > MAX_UPLOAD_NAME_BYTES || !plain(stem) || !EXTENSIONS.contains(&ext) {
            return Err(UploadError::Name);
        }
        let header_ok = match ext {
            "wav" => bytes.len() > 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
            _ => bytes.starts_with(b"fLaC"),
        };
        if !header_ok {
            return Err(UploadError::Content);
        }
        let root = self.roots.first().ok_or(UploadError::NoDirectory)?;
        let dir = root.join(UPLOADS);
        tokio::fs::create_dir_all(&dir).await?;
        let part = dir.join(format!(".{name}.part"));
        tokio::fs::write(&part, bytes).await?;
        tokio::fs::rename(&part, dir.join(name)).await?;
        Ok(format!("{UPLOADS}/{name}"))
    }
}

/// A name made only of plain components, with a prompt file's extension.
fn check_name(name: &str) -> Result<&Path, PromptError> {
    if name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.contains(['\0', '\\'])
        || name.chars().any(char::is_control)
    {
        return Err(PromptError::NotRelative);
    }
    let path = Path::new(name);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(PromptError::NotRelative);
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension {
        Some(e) if EXTENSIONS.contains(&e.as_str()) => Ok(path),
        _ => Err(PromptError::Extension),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uploads_are_stored_under_their_plain_name_and_resolve() {
        let base = tempfile::tempdir().unwrap();
        let dirs = PromptDirs::new([base.path().join("prompts")]);
        let wav = b"RIFF\x24\0\0\0WAVEfmt ".to_vec();
        let name = dirs.store_upload("q-1_b.wav", &wav).await.unwrap();
        assert_eq!(name, "uploads/q-1_b.wav");
        assert!(dirs.resolve(&name).await.is_ok());
        assert_eq!(
            std::fs::read(base.path().join("prompts/uploads/q-1_b.wav")).unwrap(),
            wav
        );
        for bad in [
            "../x.wav",
            "a/b.wav",
            "Q1.wav",
            ".wav",
            "x.mp3",
            "x",
            "x.wav.exe",
        ] {
            assert!(
                matches!(dirs.store_upload(bad, &wav).await, Err(UploadError::Name)),
                "{bad}"
            );
        }
        assert!(matches!(
            dirs.store_upload("x.flac", &wav).await,
            Err(UploadError::Content)
        ));
        assert!(matches!(
            dirs.store_upload("x.wav", b"fLaC").await,
            Err(UploadError::Content)
        ));
        assert!(dirs.store_upload("x.flac", b"fLaC\0\0").await.is_ok());
    }

    #[tokio::test]
    async fn names_resolve_inside_the_directories_only() {
        let base = tempfile::tempdir().unwrap();
        let own = base.path().join("prompts");
        let builtin = base.path().join("data").join("prompts");
        std::fs::create_dir_all(own.join("sub")).unwrap();
        std::fs::create_dir_all(builtin.join("default")).unwrap();
        std::fs::write(own.join("q1.wav"), b"RIFF").unwrap();
        std::fs::write(own.join("sub").join("q2.FLAC"), b"fLaC").unwrap();
        std::fs::write(builtin.join("default").join("greeting.wav"), b"RIFF").unwrap();
        let secret = base.path().join("secret.wav");
        std::fs::write(&secret, b"RIFF").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&secret, own.join("link.wav")).unwrap();
            std::os::unix::fs::symlink("/etc", own.join("etc")).unwrap();
            std::os::unix::fs::symlink(own.join("q1.wav"), own.join("inside.wav")).unwrap();
            std::os::unix::fs::symlink(base.path(), own.join("up")).unwrap();
        }
        let dirs = PromptDirs::new([own.clone(), builtin.clone(), own.clone()]);
        assert_eq!(dirs.roots().len(), 2);

        let canon = |p: PathBuf| std::fs::canonicalize(p).unwrap();
        assert_eq!(dirs.resolve("q1.wav").await, Ok(canon(own.join("q1.wav"))));
        assert_eq!(
            dirs.resolve("sub/q2.FLAC").await,
            Ok(canon(own.join("sub/q2.FLAC")))
        );
        assert_eq!(
            dirs.resolve("default/greeting.wav").await,
            Ok(canon(builtin.join("default/greeting.wav")))
        );
        let refused = [
            ("", PromptError::NotRelative),
            ("/etc/shadow", PromptError::NotRelative),
            (secret.to_str().unwrap(), PromptError::NotRelative),
            ("../secret.wav", PromptError::NotRelative),
            ("sub/../../secret.wav", PromptError::NotRelative),
            ("./q1.wav", PromptError::NotRelative),
            ("q1\0.wav", PromptError::NotRelative),
            ("..\\secret.wav", PromptError::NotRelative),
            ("q1.txt", PromptError::Extension),
            ("sub", PromptError::Extension),
            ("nope.wav", PromptError::NotFound),
            ("sub.wav", PromptError::NotFound),
        ];
        for (name, want) in refused {
            assert_eq!(dirs.resolve(name).await, Err(want), "{name:?}");
        }
        #[cfg(unix)]
        {
            assert_eq!(dirs.resolve("link.wav").await, Err(PromptError::Escapes));
            assert_eq!(
                dirs.resolve("up/secret.wav").await,
                Err(PromptError::Escapes)
            );
            assert_eq!(
                dirs.resolve("etc/shadow.wav").await,
                Err(PromptError::NotFound)
            );
            assert_eq!(
                dirs.resolve("inside.wav").await,
                Ok(canon(own.join("q1.wav")))
            );
        }
        assert_eq!(
            PromptDirs::default().resolve("q1.wav").await,
            Err(PromptError::NotFound)
        );
    }
}
