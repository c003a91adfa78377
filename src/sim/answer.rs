//! What one request gets back: Chat's JSON envelope (with command-specific fields), an HTTP
//! error page, or a dropped connection, and how each is written as an HTTP response.

use std::fmt;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

/// Returned from the service to make hyper drop the connection without answering.
#[derive(Debug)]
pub(super) struct InjectedReset;

impl fmt::Display for InjectedReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("injected connection reset")
    }
}

impl std::error::Error for InjectedReset {}

/// What one request gets.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Answer {
    /// HTTP 200 with Chat's envelope; `extra` holds command-specific fields (e.g. `ResultItem`).
    Chat {
        code: u32,
        info: String,
        extra: Map<String, Value>,
    },
    /// A non-200 HTTP status with a gateway's HTML error page.
    Http(u16),
    /// HTTP 200 with a proxy's HTML sign-in page that echoes the request URL first thing, so
    /// the UserSig falls within any excerpt of it.
    ProxyPage,
    Reset,
}

impl Answer {
    pub(super) fn ok() -> Answer {
        Answer::Chat {
            code: 0,
            info: String::new(),
            extra: Map::new(),
        }
    }

    /// OK with one command-specific field, e.g. `FailAccounts`.
    pub(super) fn ok_with(field: &str, value: Value) -> Answer {
        let mut extra = Map::new();
        extra.insert(field.to_string(), value);
        Answer::Chat {
            code: 0,
            info: String::new(),
            extra,
        }
    }

    pub(super) fn fail(code: u32, info: impl Into<String>) -> Answer {
        Answer::Chat {
            code,
            info: info.into(),
            extra: Map::new(),
        }
    }

    /// The key this answer is counted under in [`super::SimStats::codes`].
    pub(super) fn stats_key(&self) -> String {
        match self {
            Answer::Chat { code, .. } => code.to_string(),
            Answer::Http(status) => format!("http_{status}"),
            Answer::ProxyPage => "proxy_page".to_string(),
            Answer::Reset => "reset".to_string(),
        }
    }

    /// `error_display`: whether the envelope carries `ErrorDisplay` (profile APIs do, account
    /// APIs do not). `request_uri` is what a proxy page echoes.
    pub(super) fn into_response(
        self,
        error_display: bool,
        request_uri: &str,
    ) -> Result<Response<Full<Bytes>>, InjectedReset> {
        match self {
            Answer::Chat { code, info, extra } => {
                let mut envelope = Map::new();
                let status = if code == 0 { "OK" } else { "FAIL" };
                envelope.insert("ActionStatus".into(), status.into());
                envelope.insert("ErrorCode".into(), code.into());
                envelope.insert("ErrorInfo".into(), info.into());
                if error_display {
                    envelope.insert("ErrorDisplay".into(), "".into());
                }
                envelope.extend(extra);
                let body = serde_json::to_vec(&Value::Object(envelope)).unwrap_or_default();
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                Ok(response)
            }
            Answer::Http(status) => {
                let status = StatusCode::from_u16(status)
                    .ok()
                    .filter(|status| *status != StatusCode::OK)
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                let page = format!("<html><body><h1>{status}</h1></body></html>");
                Ok(html(status, page))
            }
            Answer::ProxyPage => {
                let page = format!(
                    "<html><body>Blocked: {request_uri}<br>Proxy authentication required. \
                     Sign in to continue.</body></html>"
                );
                Ok(html(StatusCode::OK, page))
            }
            Answer::Reset => Err(InjectedReset),
        }
    }
}

fn html(status: StatusCode, page: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(page)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

/// Parses a request body as JSON, or answers 60003.
pub(super) fn parse_json(body: &[u8]) -> Result<Value, Answer> {
    serde_json::from_slice(body)
        .map_err(|err| Answer::fail(60003, format!("the body is not JSON: {err}")))
}
