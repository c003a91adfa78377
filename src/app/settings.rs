//! The connection settings, merged from flags, the environment and a TOML config file (flags
//! win over the environment, the environment over the file). The job's own settings are built
//! in `app::config`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::app::cli::ConnectionArgs;
use crate::chat::connection::{
    parse_endpoint, read_key_file, region_url, Connection, Credentials, REGIONS,
};
use crate::chat::usersig::SecretKey;

pub const ENV_SDKAPPID: &str = "PROFILE_IMPORT_SDKAPPID";
pub const ENV_ADMIN: &str = "PROFILE_IMPORT_ADMIN";
pub const ENV_REGION: &str = "PROFILE_IMPORT_REGION";
pub const ENV_ENDPOINT: &str = "PROFILE_IMPORT_ENDPOINT";
pub const ENV_SECRET_KEY: &str = "PROFILE_IMPORT_SECRET_KEY";
pub const ENV_KEY_FILE: &str = "PROFILE_IMPORT_KEY_FILE";
pub const ENV_USERSIG: &str = "PROFILE_IMPORT_USERSIG";

/// The system-wide config file, read when neither --config nor a user config file is there.
pub const SYSTEM_CONFIG: &str = "/etc/profile-import/config.toml";

/// The optional `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub sdkappid: Option<u64>,
    pub admin: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub key_file: Option<PathBuf>,
    /// The app's custom fields, as declared in the console (`--custom-fields`).
    pub custom_fields: Option<Vec<String>>,
}

/// Reads one environment variable, treating an empty value as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Where a config file is looked for when --config is not given, in order: the user's
/// (`$XDG_CONFIG_HOME/profile-import/config.toml`, or `~/.config/…` when XDG_CONFIG_HOME is
/// unset), then the system's.
pub fn default_config_paths() -> Vec<PathBuf> {
    let absolute = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    let user_dir =
        absolute("XDG_CONFIG_HOME").or_else(|| absolute("HOME").map(|h| h.join(".config")));
    user_dir
        .map(|dir| dir.join("profile-import").join("config.toml"))
        .into_iter()
        .chain([PathBuf::from(SYSTEM_CONFIG)])
        .collect()
}

/// Which config file was read, for the message about missing settings.
enum ConfigSource {
    /// `--config PATH`.
    Given(PathBuf),
    /// The first default config file that exists.
    Found(PathBuf),
    /// None of these default config files exists.
    NoneOf(Vec<PathBuf>),
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigSource::Given(path) => {
                write!(f, "config file: read {} (--config)", path.display())
            }
            ConfigSource::Found(path) => write!(
                f,
                "config file: read {} (the first default config file that exists)",
                path.display()
            ),
            ConfigSource::NoneOf(paths) => {
                let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "config file: none read; no default config file exists ({}), and --config \
                     was not given",
                    paths.join(", ")
                )
            }
        }
    }
}

/// Reads `--config`, or else the first default config file that exists. A relative
/// `key_file` in it is made relative to the file's folder, not to wherever cron started.
fn config_file(args: &ConnectionArgs) -> anyhow::Result<(ConfigFile, ConfigSource)> {
    let (path, source) = match &args.config {
        Some(path) => (path.clone(), ConfigSource::Given(path.clone())),
        None => {
            let paths = default_config_paths();
            match paths.iter().find(|p| p.is_file()) {
                Some(path) => {
                    tracing::info!("connection settings from {}", path.display());
                    (path.clone(), ConfigSource::Found(path.clone()))
                }
                None => return Ok((ConfigFile::default(), ConfigSource::NoneOf(paths))),
            }
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let mut file = toml::from_str::<ConfigFile>(&text)
        .with_context(|| format!("config file {} is not valid", path.display()))?;
    if let Some(key_file) = &mut file.key_file {
        if key_file.is_relative() {
            let folder = path.parent().unwrap_or(Path::new(""));
            *key_file = folder.join(&*key_file);
        }
    }
    Ok((file, source))
}

/// The app's declared custom fields: `--custom-fields`, or else the config file's
/// `custom_fields`; None when neither says.
pub fn custom_fields(
    flag: &[String],
    connection: &ConnectionArgs,
) -> anyhow::Result<Option<Vec<String>>> {
    let flag: Vec<String> = flag
        .iter()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    if !flag.is_empty() {
        return Ok(Some(flag));
    }
    Ok(config_file(connection)?.0.custom_fields)
}

/// Resolves the connection settings, or names every missing one with every way to set it.
/// `need_endpoint` is false for commands that never connect (`usersig`).
pub fn connection(args: &ConnectionArgs, need_endpoint: bool) -> anyhow::Result<Connection> {
    let (file, source) = config_file(args)?;
    let mut missing = Vec::new();

    let sdkappid = match args.sdkappid {
        Some(id) => Some(id),
        None => match env(ENV_SDKAPPID) {
            Some(text) => Some(
                text.trim()
                    .parse::<u64>()
                    .with_context(|| format!("{ENV_SDKAPPID} must be a number, not {text:?}"))?,
            ),
            None => file.sdkappid,
        },
    };
    if sdkappid.is_none() {
        missing.push(format!(
            "the SDKAppID: --sdkappid ID, {ENV_SDKAPPID}, or `sdkappid = ...` in --config"
        ));
    }
    let admin = args
        .admin
        .clone()
        .or_else(|| env(ENV_ADMIN))
        .or(file.admin)
        .unwrap_or_else(|| "administrator".into());

    let endpoint = args
        .endpoint
        .clone()
        .or_else(|| env(ENV_ENDPOINT))
        .or(file.endpoint);
    let region = args
        .region
        .clone()
        .or_else(|| env(ENV_REGION))
        .or(file.region);
    let base_url = match (endpoint, region) {
        (Some(endpoint), _) => Some(parse_endpoint(&endpoint)?),
        (None, Some(region)) => Some(region_url(&region)?),
        (None, None) if !need_endpoint => Some(region_url("china")?),
        (None, None) => {
            missing.push(format!(
                "the data center: --region REGION ({}), {ENV_REGION}, --endpoint URL, {ENV_ENDPOINT}, or `region`/`endpoint` in --config",
                REGIONS.map(|(name, _)| name).join(", ")
            ));
            None
        }
    };

    let key_file = args
        .key_file
        .clone()
        .or_else(|| env(ENV_KEY_FILE).map(PathBuf::from))
        .or(file.key_file);
    let credentials = if let Some(key) = env(ENV_SECRET_KEY) {
        Some(Credentials::Key(SecretKey::new(key.trim())))
    } else if let Some(path) = key_file {
        Some(Credentials::Key(read_key_file(&path)?))
    } else if let Some(sig) = env(ENV_USERSIG) {
        Some(Credentials::FixedUserSig(SecretKey::new(sig.trim())))
    } else {
        missing.push(format!(
            "the secret key: {ENV_SECRET_KEY}, a key file (--key-file PATH, {ENV_KEY_FILE}, or `key_file` in --config), or a ready UserSig in {ENV_USERSIG}"
        ));
        None
    };

    match (sdkappid, base_url, credentials) {
        (Some(sdkappid), Some(base_url), Some(credentials)) if missing.is_empty() => {
            Ok(Connection {
                sdkappid,
                admin,
                base_url,
                credentials,
                usersig_ttl: args.usersig_ttl,
            })
        }
        _ => bail!(
            "missing settings:\n  - {}\n{source}",
            missing.join("\n  - ")
        ),
    }
}
