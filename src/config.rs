//! Connection settings: SDKAppID, admin, endpoint and credentials, merged from flags, the
//! environment and a TOML config file (flags win over the environment, the environment over
//! the file). The secret key is read only from the environment or a key file, never a flag.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;
use url::Url;

use crate::cli::ConnectionArgs;
use crate::usersig::SecretKey;

/// Chat's data centers and their REST domains (spec §1.2).
pub const REGIONS: [(&str, &str); 8] = [
    ("china", "console.tim.qq.com"),
    ("singapore", "adminapisgp.im.qcloud.com"),
    ("seoul", "adminapikr.im.qcloud.com"),
    ("tokyo", "adminapijpn.im.qcloud.com"),
    ("frankfurt", "adminapiger.im.qcloud.com"),
    ("mumbai", "adminapiind.im.qcloud.com"),
    ("silicon-valley", "adminapiusa.im.qcloud.com"),
    ("jakarta", "adminapiidn.im.qcloud.com"),
];

pub const ENV_SDKAPPID: &str = "PROFILE_IMPORT_SDKAPPID";
pub const ENV_ADMIN: &str = "PROFILE_IMPORT_ADMIN";
pub const ENV_REGION: &str = "PROFILE_IMPORT_REGION";
pub const ENV_ENDPOINT: &str = "PROFILE_IMPORT_ENDPOINT";
pub const ENV_SECRET_KEY: &str = "PROFILE_IMPORT_SECRET_KEY";
pub const ENV_KEY_FILE: &str = "PROFILE_IMPORT_KEY_FILE";
pub const ENV_USERSIG: &str = "PROFILE_IMPORT_USERSIG";

/// The optional `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub sdkappid: Option<u64>,
    pub admin: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub key_file: Option<PathBuf>,
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Generate (and renew) UserSigs from the secret key.
    Key(SecretKey),
    /// A ready UserSig from PROFILE_IMPORT_USERSIG; it cannot be renewed.
    FixedUserSig(SecretKey),
}

/// Everything needed to call Chat.
#[derive(Debug, Clone)]
pub struct Connection {
    pub sdkappid: u64,
    pub admin: String,
    /// Scheme and host (and port), e.g. `https://adminapisgp.im.qcloud.com`.
    pub base_url: Url,
    pub credentials: Credentials,
    /// Lifetime of generated UserSigs, in seconds.
    pub usersig_ttl: u64,
}

/// Reads one environment variable, treating an empty value as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Connection {
    /// Resolves the settings, or names every missing one with every way to set it.
    /// `need_endpoint` is false for commands that never connect (`usersig`).
    pub fn resolve(args: &ConnectionArgs, need_endpoint: bool) -> anyhow::Result<Connection> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<ConfigFile>(&text)
                    .with_context(|| format!("config file {} is not valid", path.display()))?
            }
            None => ConfigFile::default(),
        };
        let mut missing = Vec::new();

        let sdkappid =
            match args.sdkappid {
                Some(id) => Some(id),
                None => match env(ENV_SDKAPPID) {
                    Some(text) => Some(text.trim().parse::<u64>().with_context(|| {
                        format!("{ENV_SDKAPPID} must be a number, not {text:?}")
                    })?),
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
            _ => bail!("missing settings:\n  - {}", missing.join("\n  - ")),
        }
    }
}

fn region_url(region: &str) -> anyhow::Result<Url> {
    let wanted = region.trim().to_ascii_lowercase().replace(['_', ' '], "-");
    let wanted = match wanted.as_str() {
        "india" => "mumbai",
        "usa" | "us" => "silicon-valley",
        "korea" => "seoul",
        "japan" => "tokyo",
        "germany" => "frankfurt",
        "indonesia" => "jakarta",
        other => other,
    };
    match REGIONS.iter().find(|(name, _)| *name == wanted) {
        Some((_, domain)) => Ok(Url::parse(&format!("https://{domain}"))?),
        None => bail!(
            "unknown region {region:?}; choose one of {}, or pass --endpoint URL",
            REGIONS.map(|(name, _)| name).join(", ")
        ),
    }
}

/// Parses `--endpoint`: https anywhere, plain http only on loopback (the simulator, a local
/// proxy), since the URL carries the UserSig.
pub fn parse_endpoint(text: &str) -> anyhow::Result<Url> {
    let url =
        Url::parse(text.trim()).with_context(|| format!("--endpoint {text:?} is not a URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            bail!("--endpoint {text}: plain http is allowed only for loopback addresses; use https")
        }
        other => bail!("--endpoint {text}: unsupported scheme {other:?}"),
    }
    if url.host().is_none() {
        bail!("--endpoint {text} has no host");
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "key file {} is readable by group or others; run: chmod 600 {}",
                    path.display(),
                    path.display()
                );
            }
        }
    }
    let key = text.trim();
    if key.is_empty() {
        bail!("key file {} is empty", path.display());
    }
    Ok(SecretKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_map_to_domains() {
        assert_eq!(
            region_url("singapore").unwrap().as_str(),
            "https://adminapisgp.im.qcloud.com/"
        );
        assert_eq!(
            region_url("Silicon Valley").unwrap().as_str(),
            "https://adminapiusa.im.qcloud.com/"
        );
        assert!(region_url("mars").is_err());
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(parse_endpoint("http://127.0.0.1:8080").is_ok());
        assert!(parse_endpoint("http://localhost:1").is_ok());
        assert!(parse_endpoint("http://[::1]:1").is_ok());
        assert!(parse_endpoint("https://proxy.example.com").is_ok());
        assert!(parse_endpoint("http://proxy.example.com").is_err());
        assert!(parse_endpoint("ftp://127.0.0.1").is_err());
    }
}
