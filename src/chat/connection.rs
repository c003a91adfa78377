//! Everything needed to reach Chat: SDKAppID, admin, base URL and credentials, the region
//! table, and the checks on an endpoint and a key file. The secret key is never a flag.

use std::path::Path;

use anyhow::{bail, Context};
use url::Url;

use crate::chat::usersig::SecretKey;

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
    /// Scheme, host (and port) and a path ending in `/` that requests go under, e.g.
    /// `https://adminapisgp.im.qcloud.com/`, or `https://proxy:8080/chat/` for a proxy.
    pub base_url: Url,
    pub credentials: Credentials,
    /// Lifetime of generated UserSigs, in seconds.
    pub usersig_ttl: u64,
}

pub fn region_url(region: &str) -> anyhow::Result<Url> {
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
/// proxy), since the URL carries the UserSig. A path is kept as the prefix requests go under
/// (`http://proxy:8080/chat` sends to `/chat/v4/...`), so it is ended with `/`.
pub fn parse_endpoint(text: &str) -> anyhow::Result<Url> {
    let mut url =
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
    // The query of every request is Chat's own (sdkappid, identifier, usersig …).
    if url.query().is_some() || url.fragment().is_some() {
        bail!("--endpoint {text}: give a base URL without a query (`?…`) or fragment (`#…`)");
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// `host:port` of a base URL, for messages (never the query, which carries the UserSig).
pub fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

pub fn read_key_file(path: &Path) -> anyhow::Result<SecretKey> {
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

    /// Every region of spec §1.2's table, written out here rather than read from `REGIONS`,
    /// maps to its documented primary domain; so do the names it also goes by.
    #[test]
    fn all_eight_regions_map_to_their_documented_hosts() {
        let documented = [
            ("china", "console.tim.qq.com"),
            ("singapore", "adminapisgp.im.qcloud.com"),
            ("seoul", "adminapikr.im.qcloud.com"),
            ("tokyo", "adminapijpn.im.qcloud.com"),
            ("frankfurt", "adminapiger.im.qcloud.com"),
            ("mumbai", "adminapiind.im.qcloud.com"),
            ("silicon-valley", "adminapiusa.im.qcloud.com"),
            ("jakarta", "adminapiidn.im.qcloud.com"),
        ];
        for (region, host) in documented {
            let url = region_url(region).unwrap();
            assert_eq!(url.as_str(), format!("https://{host}/"), "{region}");
        }
        assert_eq!(
            REGIONS.len(),
            documented.len(),
            "a region the spec does not list"
        );
        for (alias, host) in [
            ("India", "adminapiind.im.qcloud.com"),
            ("USA", "adminapiusa.im.qcloud.com"),
            ("us", "adminapiusa.im.qcloud.com"),
            ("silicon_valley", "adminapiusa.im.qcloud.com"),
            ("Korea", "adminapikr.im.qcloud.com"),
            ("japan", "adminapijpn.im.qcloud.com"),
            ("Germany", "adminapiger.im.qcloud.com"),
            ("indonesia", "adminapiidn.im.qcloud.com"),
            (" Tokyo ", "adminapijpn.im.qcloud.com"),
        ] {
            assert_eq!(region_url(alias).unwrap().host_str(), Some(host), "{alias}");
        }
    }

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

    #[test]
    fn an_endpoint_path_is_kept_as_a_prefix() {
        let path = |text: &str| parse_endpoint(text).unwrap().path().to_string();
        assert_eq!(path("http://127.0.0.1:8080"), "/");
        assert_eq!(path("http://127.0.0.1:8080/chat"), "/chat/");
        assert_eq!(path("https://proxy.example.com/a/chat/"), "/a/chat/");
        assert!(parse_endpoint("https://proxy.example.com/?x=1").is_err());
        assert!(parse_endpoint("https://proxy.example.com/#x").is_err());
    }
}
