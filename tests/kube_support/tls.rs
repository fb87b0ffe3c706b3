//! TLS clusters in tests (`spec.tls`, issue 21): a CA and a member certificate made with the
//! `openssl` CLI, the `kubernetes.io/tls` Secret holding them, and the client settings a test
//! reaches a TLS cluster's members with, read from that Secret as the operator reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use redis_operator::crd::RedisCluster;
use redis_operator::redis::{AdminOptions, TlsOptions};

use super::{member_admin, password};

/// Runs `openssl ARGS` in `dir`; a failure fails the test with openssl's output.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA and one member certificate (EC P-256, one day) for `*.<headless>` and `<headless>`,
/// usable as server and client certificate, in a fresh directory named after `tag`.
pub fn pki(headless: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("e2e-tls-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    let run = |line: String| openssl(&dir, &line.split(' ').collect::<Vec<_>>());
    run(format!(
        "req -x509 {ec} -days 1 -subj /CN=e2e-ca -keyout ca.key -out ca.crt"
    ));
    run(format!(
        "req {ec} -subj /CN=member -keyout tls.key -out tls.csr"
    ));
    std::fs::write(
        dir.join("member.ext"),
        format!(
            "subjectAltName=DNS:{headless},DNS:*.{headless}\n\
             extendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n"
        ),
    )
    .unwrap();
    run(
        "x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
         -extfile member.ext -out tls.crt"
            .into(),
    );
    dir
}

/// The files `keys` of `dir` as Secret data.
pub fn secret_data(dir: &Path, keys: &[&str]) -> BTreeMap<String, ByteString> {
    keys.iter()
        .map(|k| {
            (
                k.to_string(),
                ByteString(std::fs::read(dir.join(k)).unwrap()),
            )
        })
        .collect()
}

/// Creates the `kubernetes.io/tls` Secret `name` in `ns` with `tls.crt`, `tls.key` and
/// `ca.crt` from `dir`.
pub async fn create_tls_secret(client: &Client, ns: &str, name: &str, dir: &Path) {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(secret_data(dir, &["tls.crt", "tls.key", "ca.crt"])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("create Secret {ns}/{name}: {e}"));
}

/// The TLS settings for the members of cluster `name` as it is now: `None` without
/// `spec.tls`; else trusting the Secret's `ca.crt`, presenting its `tls.crt`/`tls.key` (which
/// `clientAuth` asks for, and which does no harm without it) and expecting `serverName` (the
/// dialled IP when unset), as the operator does. Why not, in words, on failure.
pub async fn member_tls(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Option<Arc<TlsOptions>>, String> {
    let rc = Api::<RedisCluster>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| format!("get RedisCluster {ns}/{name}: {e}"))?;
    let Some(spec) = rc.and_then(|rc| rc.spec.tls) else {
        return Ok(None);
    };
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(&spec.secret_name)
        .await
        .map_err(|e| format!("get Secret {ns}/{}: {e}", spec.secret_name))?
        .ok_or_else(|| format!("no Secret {ns}/{}", spec.secret_name))?;
    let data = secret.data.unwrap_or_default();
    let key = |k: &str| {
        data.get(k)
            .map(|b| b.0.clone())
            .ok_or_else(|| format!("Secret {} has no {k}", spec.secret_name))
    };
    let (ca, crt, private_key) = (key("ca.crt")?, key("tls.crt")?, key("tls.key")?);
    let tls = TlsOptions::from_pem(&ca, Some((&crt, &private_key))).map_err(|e| e.to_string())?;
    let tls = match &spec.server_name {
        Some(server_name) => tls
            .with_server_name(server_name)
            .map_err(|e| e.to_string())?,
        None => tls,
    };
    Ok(Some(Arc::new(tls)))
}

/// [`member_admin`] for cluster `name` as it is now: its password and, under `spec.tls`,
/// [`member_tls`].
pub async fn cluster_admin(client: &Client, ns: &str, name: &str) -> Result<AdminOptions, String> {
    let pass = password(client, ns, name).await;
    Ok(AdminOptions {
        tls: member_tls(client, ns, name).await?,
        ..member_admin(&pass)
    })
}
