//! The `X-Registry-Auth` header: JSON credentials in URL-safe base64.
//!
//! The engine decodes the header with the URL-safe alphabet. bollard 0.21
//! encodes it with the standard one, which breaks every credential whose
//! encoding contains `+` or `/`; so the calls that carry credentials (pull,
//! push) build the header here and go through [`super::raw`].

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use serde::Serialize;

use crate::runtime::Credential;

#[derive(Serialize)]
struct AuthConfig<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    username: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    password: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    serveraddress: &'a str,
}

/// The header value for `credential` (or none: `{}`) at `server`.
pub fn registry_auth(credential: Option<&Credential>, server: &str) -> String {
    let config = match credential {
        Some(c) => AuthConfig {
            username: &c.username,
            password: &c.password,
            serveraddress: server,
        },
        None => AuthConfig {
            username: "",
            password: "",
            serveraddress: "",
        },
    };
    URL_SAFE.encode(serde_json::to_vec(&config).expect("serialising strings cannot fail"))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    fn credential(password: &str) -> Credential {
        Credential {
            registry: "127.0.0.1:5001".into(),
            username: "stevedore".into(),
            password: password.into(),
        }
    }

    #[test]
    fn encoding_is_url_safe_where_the_standard_alphabet_is_not() {
        // `?>?` encodes to `Pz4/` in the standard alphabet and `Pz4_` in the
        // URL-safe one; `>>>` gives `Pj4+` vs `Pj4-`.
        let c = credential("a?>?>>>z");
        let json = serde_json::to_vec(&AuthConfig {
            username: &c.username,
            password: &c.password,
            serveraddress: "127.0.0.1:5001",
        })
        .unwrap();
        let standard = STANDARD.encode(&json);
        assert!(
            standard.contains('+') || standard.contains('/'),
            "test credential must exercise the bug: {standard}"
        );
        let header = registry_auth(Some(&c), "127.0.0.1:5001");
        assert!(!header.contains('+') && !header.contains('/'), "{header}");
        let decoded: serde_json::Value =
            serde_json::from_slice(&URL_SAFE.decode(&header).unwrap()).unwrap();
        assert_eq!(decoded["password"], "a?>?>>>z");
        assert_eq!(decoded["username"], "stevedore");
        assert_eq!(decoded["serveraddress"], "127.0.0.1:5001");
    }

    #[test]
    fn no_credentials_is_an_empty_object() {
        assert_eq!(URL_SAFE.decode(registry_auth(None, "x")).unwrap(), b"{}");
    }
}
