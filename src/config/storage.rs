//! `[storage]`: where recordings are kept (README "Recordings in an object store"): the local
//! disk (`file://`, the default `<data_dir>/recordings`) or an S3-compatible bucket
//! (`s3://bucket/prefix`, with the local folder as the media plane's spool).

use earshot_signaling::blob_store::object::{S3Settings, Secret, StorageUrl};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `file:///abs/path` or `s3://bucket/prefix`; unset: `file://<data_dir>/recordings`.
    pub url: Option<String>,
    /// The S3 endpoint (MinIO, Garage, ...); unset: `AWS_ENDPOINT_URL`, else AWS S3.
    pub endpoint: Option<String>,
    /// Unset: `AWS_REGION` / `AWS_DEFAULT_REGION`, else us-east-1.
    pub region: Option<String>,
    /// Unset: `AWS_ACCESS_KEY_ID` (or the instance's credentials).
    pub access_key_id: Option<String>,
    /// Unset: `AWS_SECRET_ACCESS_KEY`. Never logged.
    pub secret_access_key: Option<Secret>,
    /// Allow an `http://` endpoint (a bucket on the same host or private network).
    pub allow_http: bool,
    /// Seconds between uploads of the live tracks' new bytes (what a lost node can lose).
    pub segment_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: None,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            segment_secs: 2,
        }
    }
}

/// Where recordings go, resolved.
#[derive(Debug, Clone)]
pub enum Storage {
    /// On the local disk, in this folder.
    Local(PathBuf),
    /// In a bucket, under `prefix`, spooled in `spool` while sessions run.
    S3 {
        settings: S3Settings,
        prefix: String,
        spool: PathBuf,
    },
}

impl StorageConfig {
    /// The storage `data_dir`'s configuration names (checked by [`Self::validate`]).
    pub fn resolve(&self, data_dir: &Path) -> Result<Storage, String> {
        let default_dir = data_dir.join("recordings");
        let Some(url) = &self.url else {
            return Ok(Storage::Local(default_dir));
        };
        match StorageUrl::parse(url).map_err(|e| format!("storage.url: {e}"))? {
            StorageUrl::Local(dir) => Ok(Storage::Local(dir)),
            StorageUrl::S3 { bucket, prefix } => Ok(Storage::S3 {
                settings: S3Settings {
                    bucket,
                    endpoint: self.endpoint.clone(),
                    region: self.region.clone(),
                    access_key_id: self.access_key_id.clone(),
                    secret_access_key: self.secret_access_key.clone(),
                    allow_http: self.allow_http,
                },
                prefix,
                spool: default_dir,
            }),
        }
    }

    /// Checks the keys; the message names the key at fault. `derive_on_request`: `[recording]
    /// derive = "on_request"`, which needs the finished tracks on the local disk.
    pub fn validate(&self, data_dir: &Path, derive_on_request: bool) -> Result<(), String> {
        let storage = self.resolve(data_dir)?;
        if !(1..=60).contains(&self.segment_secs) {
            return Err(format!(
                "storage.segment_secs must be 1..=60, got {}",
                self.segment_secs
            ));
        }
        let Storage::S3 { .. } = storage else {
            for key in ["endpoint", "region", "access_key_id", "secret_access_key"] {
                let set = match key {
                    "endpoint" => self.endpoint.is_some(),
                    "region" => self.region.is_some(),
                    "access_key_id" => self.access_key_id.is_some(),
                    _ => self.secret_access_key.is_some(),
                };
                if set {
                    return Err(format!(
                        "storage.{key} is set but storage.url is not an s3:// URL"
                    ));
                }
            }
            return Ok(());
        };
        if let Some(endpoint) = &self.endpoint {
            let (scheme, rest) = endpoint.split_once("://").unwrap_or(("", endpoint));
            match scheme {
                "https" => {}
                "http" if self.allow_http => {}
                "http" => {
                    return Err(format!(
                        "storage.endpoint {endpoint:?} is http://: set storage.allow_http = true to allow it"
                    ));
                }
                _ => {
                    return Err(format!(
                        "storage.endpoint must be an http:// or https:// URL, got {endpoint:?}"
                    ));
                }
            }
            if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
                return Err(format!("storage.endpoint {endpoint:?} has no host"));
            }
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(
                "storage.access_key_id and storage.secret_access_key go together: set both or neither"
                    .into(),
            );
        }
        if derive_on_request {
            return Err(
                "recording.derive = \"on_request\" needs the tracks on the local disk: it cannot be used with storage.url = \"s3://...\""
                    .into(),
            );
        }
        Ok(())
    }
}
