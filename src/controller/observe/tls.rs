//! The TLS client settings the operator talks to the members with, from `spec.tls`'s Secret as
//! it is now: the CA it trusts (`ca.crt`), the certificate it presents (`tls.crt`/`tls.key`, the
//! members' own, asked for only under `clientAuth`) and the name it checks (`serverName`, or
//! each member's pod IP).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::controller::build::tls::{CA_KEY, CERT_KEY, KEY_KEY};
use crate::controller::context::Context;
use crate::controller::error::Error;
use crate::crd::{RedisCluster, TlsSpec};
use crate::redis::tls::TlsOptions;

/// `spec.tls` as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// The cluster has no `spec.tls`: plaintext.
    Off,
    /// The Secret is complete and parses.
    Ready(Arc<TlsOptions>),
    /// What is wrong with the Secret (missing, a key missing, PEM that does not parse).
    Invalid(String),
}

/// Reads `cluster`'s TLS Secret, when it has `spec.tls`.
///
/// # Errors
/// Kubernetes API failures.
pub async fn read(cluster: &RedisCluster, ctx: &Context, ns: &str) -> Result<Tls, Error> {
    let Some(spec) = cluster.spec.tls.as_ref() else {
        return Ok(Tls::Off);
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = api.get_opt(&spec.secret_name).await?;
    Ok(match options(spec, secret.as_ref()) {
        Ok(options) => Tls::Ready(Arc::new(options)),
        Err(message) => Tls::Invalid(message),
    })
}

/// The client settings from the Secret, or why it cannot give them. Pure, for the tests.
///
/// # Errors
/// A sentence naming the Secret and what is wrong, for the `Ready=False` condition.
pub fn options(spec: &TlsSpec, secret: Option<&Secret>) -> Result<TlsOptions, String> {
    let name = &spec.secret_name;
    let Some(secret) = secret else {
        return Err(format!("spec.tls: Secret {name} not found"));
    };
    let key = |key: &str| -> Result<Vec<u8>, String> {
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone());
        let string = || {
            let s = secret.string_data.as_ref()?.get(key)?;
            Some(s.as_bytes().to_vec())
        };
        match data.or_else(string) {
            Some(bytes) if !bytes.is_empty() => Ok(bytes),
            _ => Err(format!(
                "spec.tls: Secret {name} has no {key} (it needs tls.crt, tls.key and ca.crt)"
            )),
        }
    };
    let (ca, cert, private_key) = (key(CA_KEY)?, key(CERT_KEY)?, key(KEY_KEY)?);
    let options = TlsOptions::from_pem(&ca, Some((&cert, &private_key)))
        .map_err(|e| format!("spec.tls: Secret {name}: {e}"))?;
    match &spec.server_name {
        None => Ok(options),
        Some(server_name) => options
            .with_server_name(server_name)
            .map_err(|e| format!("spec.tls.serverName: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::Command;

    use k8s_openapi::ByteString;

    use super::*;

    fn spec(server_name: Option<&str>) -> TlsSpec {
        TlsSpec {
            secret_name: "demo-tls".into(),
            client_auth: false,
            plaintext_port: false,
            server_name: server_name.map(str::to_string),
        }
    }

    /// Secret keys and their contents.
    type Data<'a> = &'a [(&'a str, &'a [u8])];

    fn secret(data: Data<'_>) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_string(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }

    /// A CA and a member certificate signed by it (EC P-256, one day), as PEM.
    fn pem_set() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        // One directory per call: the tests run in parallel in one process.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("observe-tls-{}-{call}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=test-ca"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
        openssl(&dir, &ca);
        let mut csr = vec!["req", "-subj", "/CN=member"];
        csr.extend(ec);
        csr.extend(["-keyout", "tls.key", "-out", "tls.csr"]);
        openssl(&dir, &csr);
        // A v3 certificate (webpki refuses v1) usable both ways, as members use theirs.
        std::fs::write(
            dir.join("member.ext"),
            "subjectAltName=DNS:demo-headless.ns.svc\n\
             extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let sign = "x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1";
        let mut args: Vec<&str> = sign.split(' ').collect();
        args.extend(["-extfile", "member.ext", "-out", "tls.crt"]);
        openssl(&dir, &args);
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
        let set = (read("ca.crt"), read("tls.crt"), read("tls.key"));
        std::fs::remove_dir_all(&dir).unwrap();
        set
    }

    #[test]
    fn a_missing_secret_or_key_is_named() {
        let err = options(&spec(None), None).unwrap_err();
        assert_eq!(err, "spec.tls: Secret demo-tls not found");
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        // (keys present, the key the message must name)
        let cases: [(Data<'_>, &str); 4] = [
            (&[], "ca.crt"),
            (&[("ca.crt", pem)], "tls.crt"),
            (&[("ca.crt", pem), ("tls.crt", pem)], "tls.key"),
            (
                &[("ca.crt", b""), ("tls.crt", pem), ("tls.key", pem)],
                "ca.crt",
            ),
        ];
        for (data, missing) in cases {
            let err = options(&spec(None), Some(&secret(data))).unwrap_err();
            assert!(
                err.contains(&format!("has no {missing}")),
                "{missing}: {err}"
            );
        }
    }

    #[test]
    fn pem_that_does_not_parse_is_refused_with_the_file() {
        let garbage: &[u8] = b"not PEM";
        let err = options(
            &spec(None),
            Some(&secret(&[
                ("ca.crt", garbage),
                ("tls.crt", garbage),
                ("tls.key", garbage),
            ])),
        )
        .unwrap_err();
        assert!(
            err.starts_with("spec.tls: Secret demo-tls: ca.crt"),
            "{err}"
        );
        let (ca, crt, _) = pem_set();
        let (_, _, other_key) = pem_set();
        let err = options(
            &spec(None),
            Some(&secret(&[
                ("ca.crt", &ca),
                ("tls.crt", &crt),
                ("tls.key", &other_key),
            ])),
        )
        .unwrap_err();
        assert!(err.starts_with("spec.tls: Secret demo-tls: "), "{err}");
    }

    #[test]
    fn a_complete_secret_gives_the_client_settings() {
        let (ca, crt, key) = pem_set();
        let data: [(&str, &[u8]); 3] = [("ca.crt", &ca), ("tls.crt", &crt), ("tls.key", &key)];
        let by_ip = options(&spec(None), Some(&secret(&data))).unwrap();
        assert!(by_ip.presents_client_cert());
        let addr = "10.1.2.3:6379".parse().unwrap();
        assert!(matches!(
            by_ip.server_name_for(addr),
            tokio_rustls::rustls::pki_types::ServerName::IpAddress(_)
        ));
        // Every admin connection of a reconcile uses them, with the password.
        let auth = crate::controller::observe::auth::Auth::Ready {
            secret: Default::default(),
            password: "pw".into(),
            tls: None,
        }
        .with_tls(Tls::Ready(Arc::new(by_ip.clone())));
        let admin = crate::controller::observe::redis::admin_options(&auth);
        assert_eq!(admin.tls.as_deref(), Some(&by_ip));
        assert_eq!(admin.auth.map(|a| a.password), Some("pw".to_string()));
        let named = options(&spec(Some("demo-headless.ns.svc")), Some(&secret(&data))).unwrap();
        assert_eq!(
            named.server_name_for(addr),
            tokio_rustls::rustls::pki_types::ServerName::try_from("demo-headless.ns.svc").unwrap()
        );
    }
}
