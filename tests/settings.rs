//! Connection settings: a flag wins over the environment, the environment over the config
//! file; the UserSig printed by `usersig` shows which SDKAppID and admin won; an `--endpoint`
//! path is where requests go (a proxy in front of Chat); missing settings name the config
//! files looked in.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use profile_import::chat::usersig;
use profile_import::sim::{SimConfig, SimHandle};

use crate::util::tool_command;

/// Runs `usersig`; returns the printed UserSig and its decoded document.
fn usersig_with(args: &[&str], env: &[(&str, &str)]) -> (String, usersig::SigDocument) {
    let output = tool_command()
        .arg("usersig")
        .args(args)
        .env("PROFILE_IMPORT_SECRET_KEY", "settings-key")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sig = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let doc = usersig::decode(&sig).unwrap();
    (sig, doc)
}

#[test]
fn flags_win_over_the_environment_and_the_environment_over_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chat.toml");
    std::fs::write(&config, "sdkappid = 1400000001\nadmin = \"from_file\"\n").unwrap();
    let config = config.to_str().unwrap();

    let (_, doc) = usersig_with(&["--config", config], &[]);
    assert_eq!(
        (doc.sdkappid, doc.identifier.as_str()),
        (1400000001, "from_file")
    );

    let env = [
        ("PROFILE_IMPORT_SDKAPPID", "1400000002"),
        ("PROFILE_IMPORT_ADMIN", "from_env"),
    ];
    let (_, doc) = usersig_with(&["--config", config], &env);
    assert_eq!(
        (doc.sdkappid, doc.identifier.as_str()),
        (1400000002, "from_env")
    );

    let (sig, doc) = usersig_with(
        &[
            "--config",
            config,
            "--sdkappid",
            "1400000003",
            "--admin",
            "from_flag",
        ],
        &env,
    );
    assert_eq!(
        (doc.sdkappid, doc.identifier.as_str()),
        (1400000003, "from_flag")
    );
    // The UserSig is signed with the key from the environment and valid for a day.
    assert_eq!(doc.expire, 86_400);
    assert!(usersig::verify(
        &sig,
        &usersig::SecretKey::new("settings-key"),
        1400000003,
        "from_flag",
        doc.time + 60
    )
    .is_ok());
}

#[test]
fn a_key_file_readable_by_others_gets_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "file-key\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let output = tool_command()
        .args(["usersig", "--sdkappid", "1400000000", "--key-file"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("readable by group or others"), "{stderr}");
    assert!(!stderr.contains("file-key"));
    let doc = usersig::decode(String::from_utf8(output.stdout).unwrap().trim()).unwrap();
    let expected = usersig::signature(
        &usersig::SecretKey::new("file-key"),
        &doc.identifier,
        doc.sdkappid,
        doc.time,
        doc.expire,
    );
    assert_eq!(doc.sig, expected, "signed with the key from the file");
}

#[test]
fn a_usersig_lifetime_out_of_range_is_a_usage_error() {
    for ttl in ["59", "315360001", "18446744073709551615"] {
        let output = tool_command()
            .args(["usersig", "--sdkappid", "1400000000", "--usersig-ttl", ttl])
            .env("PROFILE_IMPORT_SECRET_KEY", "settings-key")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{ttl}: {stderr}");
        assert!(stderr.contains("60..=315360000"), "{stderr}");
    }
    let (_, doc) = usersig_with(
        &["--sdkappid", "1400000000", "--usersig-ttl", "315360000"],
        &[],
    );
    assert_eq!(doc.expire, 315_360_000);
}

// ── an endpoint behind a path ──────────────────────────────────────────────────────────────

/// A reverse proxy on a port-0 loopback listener that serves Chat under `/chat/` only: it
/// strips the prefix and forwards to `upstream`; any other path gets 404. Returns its base
/// URL and every path it was asked for.
async fn chat_under_prefix(upstream: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let base = format!("http://{}/chat/", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let paths = seen.clone();
    let client = reqwest::Client::new();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (client, upstream, seen) = (client.clone(), upstream.clone(), seen.clone());
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                forward(client.clone(), upstream.clone(), seen.clone(), req)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (base, paths)
}

async fn forward(
    client: reqwest::Client,
    upstream: String,
    seen: Arc<Mutex<Vec<String>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    seen.lock().unwrap().push(req.uri().path().to_string());
    let target = req
        .uri()
        .path_and_query()
        .and_then(|p| p.as_str().strip_prefix("/chat/"))
        .map(|rest| format!("{upstream}/{rest}"));
    let Some(target) = target else {
        let mut not_found = Response::new(Full::new(Bytes::from("no such path")));
        *not_found.status_mut() = hyper::StatusCode::NOT_FOUND;
        return Ok(not_found);
    };
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let answer = client
        .post(target)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let mut response = Response::new(Full::new(answer.bytes().await.unwrap()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    Ok(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_with_a_path_sends_every_request_under_that_path() {
    let mut config = SimConfig::new(1_400_000_000, "administrator", usersig::SecretKey::new("k"));
    config.limit_per_sec = 0;
    let sim = SimHandle::start(config).await.unwrap();
    let (endpoint, paths) = chat_under_prefix(sim.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("UserID,Nick\n");
    for i in 0..20 {
        csv.push_str(&format!("user_{i:02},Nick {i}\n"));
    }
    std::fs::write(dir.path().join("users.csv"), csv).unwrap();
    let mut command = tool_command();
    command
        .current_dir(dir.path())
        .args(["-v", "import", "users.csv", "--no-progress"])
        .args(["--sdkappid", "1400000000", "--endpoint", &endpoint])
        .env("PROFILE_IMPORT_SECRET_KEY", "k");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(sim.profiles().len(), 20, "Chat holds every row");
    let paths = paths.lock().unwrap().clone();
    assert_eq!(paths.len(), 20, "{paths:?}");
    assert!(
        paths.iter().all(|p| p == "/chat/v4/profile/portrait_set"),
        "{paths:?}"
    );
    // -v names the URL requests really go to.
    assert!(
        stderr.contains(&format!("sending to {endpoint} as administrator")),
        "{stderr}"
    );
}

// ── where the settings were looked for ─────────────────────────────────────────────────────

/// `usersig` with no settings but those in `XDG_CONFIG_HOME=dir`; returns stderr.
fn missing_settings_in(dir: &std::path::Path, args: &[&str]) -> String {
    let output = tool_command()
        .current_dir(dir)
        .arg("usersig")
        .args(args)
        .env("XDG_CONFIG_HOME", dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing settings:"), "{stderr}");
    stderr
}

#[test]
fn missing_settings_name_the_config_files_looked_in_and_the_one_read() {
    let dir = tempfile::tempdir().unwrap();
    let user_config = dir.path().join("profile-import").join("config.toml");
    let system_config = std::path::Path::new("/etc/profile-import/config.toml");

    let stderr = missing_settings_in(dir.path(), &[]);
    if !system_config.exists() {
        assert!(
            stderr.contains(&format!(
                "config file: none read; no default config file exists ({}, {})",
                user_config.display(),
                system_config.display()
            )),
            "{stderr}"
        );
    }

    std::fs::create_dir(user_config.parent().unwrap()).unwrap();
    std::fs::write(&user_config, "region = \"singapore\"\n").unwrap();
    let stderr = missing_settings_in(dir.path(), &[]);
    assert!(
        stderr.contains(&format!(
            "config file: read {} (the first default config file that exists)",
            user_config.display()
        )),
        "{stderr}"
    );

    std::fs::write(dir.path().join("chat.toml"), "admin = \"ops\"\n").unwrap();
    let stderr = missing_settings_in(dir.path(), &["--config", "chat.toml"]);
    assert!(
        stderr.contains("config file: read chat.toml (--config)"),
        "{stderr}"
    );
}
