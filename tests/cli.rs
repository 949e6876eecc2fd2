//! The binary's command line: `earshot check-config` validates and explains the configuration
//! without creating anything, and refuses a bad one naming the key, as `serve` does.

mod support;

use std::process::Command;

fn check_config(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_earshot"));
    cmd.arg("check-config").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // What the test runner's environment may hold must not leak in.
    cmd.env_remove("EARSHOT_CONFIG")
        .env_remove("RUST_BACKTRACE");
    let out = cmd.output().expect("run earshot");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_the_effective_configuration_with_sources_and_masks_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("earshot.toml");
    std::fs::write(
        &file,
        "[server]\ndata_dir = \"DATA\"\n[opus]\nbitrate = 48000\n"
            .replace("DATA", &dir.path().join("data").display().to_string()),
    )
    .expect("write");
    let (ok, out, err) = check_config(
        &["--config", file.to_str().expect("utf-8 path")],
        &[
            ("EARSHOT_OPUS_COMPLEXITY", "9"),
            (
                "EARSHOT_ADMIN_TOKEN",
                "a-secret-admin-token-0123456789abcdef",
            ),
            (
                "EARSHOT_TURN_ICE_SERVERS",
                r#"[{urls = ["turn:127.0.0.1:3478"], username = "u", credential = "turn-password-xyz"}]"#,
            ),
        ],
    );
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in\n{out}"))
            .to_owned()
    };
    assert!(line("bitrate").contains(&format!("# file {}", file.display())));
    assert!(line("complexity").starts_with("complexity = 9"));
    assert!(line("complexity").ends_with("# env EARSHOT_OPUS_COMPLEXITY"));
    assert!(line("fec").ends_with("# default"));
    assert!(!out.contains("turn-password-xyz") && !out.contains("a-secret-admin-token"));
    assert!(out.contains("admin token") && out.contains("EARSHOT_ADMIN_TOKEN, masked"));
    // It creates nothing: not the data directory, not a token.
    assert!(!dir.path().join("data").exists());
}

#[test]
fn check_config_refuses_a_bad_configuration_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[media]\nno_such_key = 1\n").expect("write");
    let path = file.to_str().expect("utf-8 path");
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--config", path], &[], "no_such_key"),
        (
            &[],
            &[("EARSHOT_MEDIA_UDP_PORT_MIN", "5000")],
            "udp_port_min",
        ),
        (&[], &[("EARSHOT_OPUS_BITRATE", "5")], "opus.bitrate"),
        (
            &[],
            &[("EARSHOT_SERVER_LISTEN", "nonsense")],
            "socket address",
        ),
        (
            &[],
            &[("EARSHOT_TURN_ICE_SERVERS", r#"[{urls = ["http://x"]}]"#)],
            "turn.ice_servers",
        ),
        (
            &["--config", "/nonexistent/earshot.toml"],
            &[],
            "/nonexistent/earshot.toml",
        ),
        (
            &[],
            &[("EARSHOT_SERVER_PUBLIC_URL", "interviews.example.org")],
            "server.public_url",
        ),
        (
            &[],
            &[("EARSHOT_TURN_URLS", r#"["turn:127.0.0.1:3478"]"#)],
            "turn.shared_secret",
        ),
        (
            &[],
            &[
                ("EARSHOT_SERVER_TLS_CERT", "/nonexistent/cert.pem"),
                ("EARSHOT_SERVER_TLS_KEY", "/nonexistent/key.pem"),
            ],
            "server.tls_cert",
        ),
        (
            &[],
            &[("EARSHOT_AGENT_CA_FILE", "/nonexistent/ca.pem")],
            "agent.ca_file",
        ),
    ];
    for (args, env, needle) in cases {
        let (ok, out, err) = check_config(args, env);
        assert!(!ok, "{args:?} {env:?} accepted:\n{out}");
        assert!(
            err.contains(needle),
            "{args:?} {env:?}: the message should name {needle:?}:\n{err}"
        );
    }
}

#[tokio::test]
async fn serve_logs_json_lines_when_asked() {
    let server = support::Server::start(&[("EARSHOT_LOG_FORMAT", "json")]).await;
    let log = server.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 2, "{log}");
    for l in &lines {
        assert!(l["timestamp"].is_string() && l["level"].is_string(), "{l}");
    }
    // The start line names the address it listens on.
    assert!(
        lines
            .iter()
            .any(|l| l.to_string().contains(&server.base.replace("http://", ""))),
        "{log}"
    );
    // And the admin token given in the environment is in no line.
    assert!(!log.contains(support::ADMIN_TOKEN));
}

/// The shipped systemd unit passes `systemd-analyze verify` with no warning (an unknown or
/// misspelt key is only a warning there, so any output fails the test), run against the binary
/// just built.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("turn-config/earshot.service"),
    )
    .expect("unit file");
    assert!(unit.contains("ExecStart=/usr/local/bin/earshot serve"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("earshot.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/earshot", env!("CARGO_BIN_EXE_earshot")),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/install-deps.sh --test installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze warned:\n{stderr}"
    );
}

/// `earshot user add` makes the first superuser; with it, the admin token can be turned off
/// (`[auth] admin_token_enabled = false`), which without it refuses to start.
#[tokio::test]
async fn user_add_makes_a_superuser_and_the_admin_token_can_then_be_turned_off() {
    let data = tempfile::tempdir().expect("tempdir");
    let data_path = data.path().to_str().expect("utf-8 path").to_string();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_earshot"));
        cmd.args(args)
            .env_remove("EARSHOT_CONFIG")
            .env_remove("EARSHOT_PASSWORD");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run earshot")
    };
    let off = [
        ("EARSHOT_AUTH_ADMIN_TOKEN_ENABLED", "false"),
        ("EARSHOT_ADMIN_TOKEN", support::ADMIN_TOKEN),
    ];
    let refused = run(
        &["serve", "--data-dir", &data_path, "--listen", "127.0.0.1:0"],
        &off,
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("no superuser user exists"), "{err}");
    let no_password = run(
        &[
            "user",
            "add",
            "--data-dir",
            &data_path,
            "--email",
            "root@example.org",
        ],
        &[],
    );
    assert!(!no_password.status.success());
    assert!(String::from_utf8_lossy(&no_password.stderr).contains("EARSHOT_PASSWORD"));
    let added = run(
        &[
            "user",
            "add",
            "--data-dir",
            &data_path,
            "--email",
            "root@example.org",
            "--superuser",
        ],
        &[("EARSHOT_PASSWORD", "correct horse battery")],
    );
    assert!(added.status.success(), "{added:?}");
    let id = String::from_utf8_lossy(&added.stdout).trim().to_string();
    assert!(id.starts_with("usr_"), "{id}");

    let server = support::Server::start_in(data, &off).await;
    let by_token = server
        .admin(server.http.get(server.url("/v1/campaigns")))
        .send()
        .await
        .expect("request");
    assert_eq!(by_token.status(), 401, "the admin token is off");
    let signin = server
        .http
        .post(server.url("/console/signin"))
        .header("x-earshot-console", "1")
        .json(
            &serde_json::json!({"email": "root@example.org", "password": "correct horse battery"}),
        )
        .send()
        .await
        .expect("sign in");
    assert_eq!(signin.status(), 204);
    let cookie = signin.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let users: serde_json::Value = server
        .http
        .get(server.url("/v1/users"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("users")
        .json()
        .await
        .expect("json");
    assert_eq!(users["users"][0]["id"], id.as_str());
    assert_eq!(users["users"][0]["superuser"], true);
}
