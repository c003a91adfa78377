//! Connection settings: a flag wins over the environment, the environment over the config
//! file; the UserSig printed by `usersig` shows which SDKAppID and admin won.

use profile_import::chat::usersig;

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
