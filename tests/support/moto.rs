//! A real S3-compatible server for the object storage tests: moto's server mode
//! (`moto_server`, PyPI `moto[server]`, installed by `scripts/install-deps.sh --test` into the
//! test venv at `$AIORTC_VENV`, default `~/.cache/earshot/test-venv`) on a free loopback port,
//! in a temp dir, killed when the test ends. Production uses AWS S3, MinIO, Garage or
//! similar; moto speaks the same S3 API.

use earshot_signaling::blob_store::object::{S3Settings, Secret};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The credentials the tests sign with (moto accepts any).
pub const ACCESS_KEY_ID: &str = "earshot-test-key";
pub const SECRET_ACCESS_KEY: &str = "earshot-test-secret";

pub struct Moto {
    child: Child,
    _dir: tempfile::TempDir,
    pub endpoint: String,
    pub bucket: String,
}

fn moto_server_path() -> PathBuf {
    let venv = std::env::var_os("AIORTC_VENV").map_or_else(
        || {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/earshot/test-venv")
        },
        PathBuf::from,
    );
    let path = venv.join("bin/moto_server");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/install-deps.sh --test (installs moto[server] into the test venv)",
        path.display()
    );
    path
}

impl Moto {
    /// Starts moto and creates `bucket`.
    pub async fn start(bucket: &str) -> Moto {
        let port = super::free_port_on("127.0.0.1");
        let dir = tempfile::tempdir().expect("moto dir");
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto log");
        let child = Command::new(moto_server_path())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn moto_server");
        let moto = Moto {
            child,
            _dir: dir,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_owned(),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Creating the bucket is also the readiness probe.
            if let Ok(r) = http.put(format!("{}/{bucket}", moto.endpoint)).send().await {
                assert!(
                    r.status().is_success(),
                    "creating the bucket: {}",
                    r.status()
                );
                return moto;
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn settings(&self) -> S3Settings {
        S3Settings {
            bucket: self.bucket.clone(),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY_ID.into()),
            secret_access_key: Some(Secret(SECRET_ACCESS_KEY.into())),
            allow_http: true,
        }
    }

    /// A client of the bucket.
    pub fn client(&self) -> Arc<dyn object_store::ObjectStore> {
        self.settings().connect().expect("S3 client")
    }

    /// The server's `[storage]` for this bucket under `prefix`.
    pub fn server_env(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (
                "EARSHOT_STORAGE_URL".into(),
                format!("s3://{}/{prefix}", self.bucket),
            ),
            ("EARSHOT_STORAGE_ENDPOINT".into(), self.endpoint.clone()),
            ("EARSHOT_STORAGE_ALLOW_HTTP".into(), "true".into()),
            ("EARSHOT_STORAGE_REGION".into(), "us-east-1".into()),
            ("EARSHOT_STORAGE_ACCESS_KEY_ID".into(), ACCESS_KEY_ID.into()),
            (
                "EARSHOT_STORAGE_SECRET_ACCESS_KEY".into(),
                SECRET_ACCESS_KEY.into(),
            ),
        ]
    }

    /// The object `name` (it must be there).
    pub async fn get(&self, name: &str) -> bytes::Bytes {
        use object_store::ObjectStoreExt;
        let path = object_store::path::Path::from(name);
        let got = self.client().get(&path).await.expect("get an object");
        got.bytes().await.expect("an object's bytes")
    }

    /// Stores `bytes` as the object `name`.
    pub async fn put(&self, name: &str, bytes: Vec<u8>) {
        use object_store::ObjectStoreExt;
        let path = object_store::path::Path::from(name);
        self.client()
            .put(&path, bytes.into())
            .await
            .expect("put an object");
    }

    /// Every object name under `prefix`, sorted.
    pub async fn names(&self, prefix: &str) -> Vec<String> {
        use futures_util::TryStreamExt;
        let prefix = object_store::path::Path::from(prefix);
        let mut names: Vec<String> = self
            .client()
            .list(Some(&prefix))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("list the bucket");
        names.sort();
        names
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
