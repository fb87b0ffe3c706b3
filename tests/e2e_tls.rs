//! End-to-end: an encrypted RedisCluster (`spec.tls`, issue 21). A CA and a member certificate
//! are made with the `openssl` CLI (the pod IPs are not known in advance, so the certificate
//! carries the headless Service's DNS names and `serverName` names one of them); the operator
//! reports an incomplete Secret as `TLSSecretInvalid` and creates nothing, then bootstraps a
//! 3×1 over TLS once the Secret is complete. From the host: TLS with the CA and a client
//! certificate answers, plaintext and a client without a certificate (`clientAuth`) are
//! refused, replication and the cluster bus run over TLS, and removing `spec.tls` is refused.
//!
//! Needs the cluster, the CRD and the RBAC: run through `make test`.

#![allow(clippy::unwrap_used, clippy::panic)]

mod kube_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube_support::*;
use redis_operator::crd::RedisCluster;
use serde_json::json;

const NAME: &str = "enc";
const SECRET: &str = "enc-tls";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA and one member certificate (EC P-256, one day) for `*.<headless>` and `<headless>`,
/// usable as server and client certificate, in a fresh directory.
fn pki(headless: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("e2e-tls-{}", std::process::id()));
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

fn secret_data(dir: &Path, keys: &[&str]) -> BTreeMap<String, ByteString> {
    keys.iter()
        .map(|k| {
            (
                k.to_string(),
                ByteString(std::fs::read(dir.join(k)).unwrap()),
            )
        })
        .collect()
}

/// redis-cli against `ip:port` (plaintext unless `tls` options are given), the password from
/// `REDISCLI_AUTH`: its output, or why it failed.
fn cli(ip: &str, password: &str, tls: &[&str], args: &[&str]) -> Result<String, String> {
    let out = Command::new("timeout")
        .args([
            "10",
            "redis-cli",
            "-h",
            ip,
            "-p",
            "6379",
            "--no-auth-warning",
        ])
        .args(tls)
        .args(args)
        .env("REDISCLI_AUTH", password)
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // redis-cli prints connection errors and error replies with exit status 0 at times.
    if out.status.success() && !stdout.is_empty() && !stdout.starts_with("Error") {
        Ok(stdout)
    } else {
        Err(format!(
            "{} stdout {stdout:?} stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

async fn condition_reason(api: &Api<RedisCluster>, reason: &str) -> RedisCluster {
    wait_for(
        &format!("Ready=False {reason}"),
        Duration::from_secs(45),
        || async {
            let rc = api.get_opt(NAME).await.ok().flatten()?;
            let (status, why, _) = condition(&rc, "Ready")?;
            (status == "False" && why == reason).then_some(rc)
        },
    )
    .await
}

#[tokio::test]
#[ignore = "needs the local cluster; run by make test"]
async fn tls_cluster_bootstraps_and_refuses_plaintext() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-tls").await;
    let _guard = DeleteOnPanic(ns.name.clone());
    let headless = format!("{NAME}-headless.{}.svc", ns.name);
    let dir = pki(&headless);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let incomplete = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(SECRET.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(secret_data(&dir, &["tls.crt", "tls.key"])),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &incomplete)
        .await
        .unwrap();
    let _op = Operator::start(&ns.name);
    let api: Api<RedisCluster> = Api::namespaced(client.clone(), &ns.name);
    let tls = json!({"secretName": SECRET, "clientAuth": true, "serverName": headless});
    api.create(
        &PostParams::default(),
        &cluster(NAME, 3, 1, json!({"tls": tls})),
    )
    .await
    .unwrap();

    // Without ca.crt: reported, and nothing is made (not even the password Secret).
    let rc = condition_reason(&api, "TLSSecretInvalid").await;
    let (_, _, message) = condition(&rc, "Ready").unwrap();
    assert!(message.contains("has no ca.crt"), "{message}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        0
    );
    assert!(
        secrets
            .get_opt(&format!("{NAME}-auth"))
            .await
            .unwrap()
            .is_none()
    );

    // Completed: looked at again within 30 s, and the cluster is made over TLS.
    let patch = json!({"data": secret_data(&dir, &["ca.crt"])});
    secrets
        .patch(SECRET, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let rc = wait_ready(&api, NAME, Duration::from_secs(150)).await;
    assert_eq!(rc.status.unwrap().ready_members.as_deref(), Some("6/6"));

    let password = password(&client, &ns.name, NAME).await;
    let (ca, crt, key) = (
        dir.join("ca.crt").display().to_string(),
        dir.join("tls.crt").display().to_string(),
        dir.join("tls.key").display().to_string(),
    );
    let with_cert = ["--tls", "--cacert", &ca, "--cert", &crt, "--key", &key];
    let without_cert = ["--tls", "--cacert", &ca];
    let members = member_pods(&client, &ns.name, NAME).await.unwrap();
    assert_eq!(members.len(), 6);
    for pod in &members {
        let ip = pod_ip(pod).unwrap();
        let info = cli(&ip, &password, &with_cert, &["cluster", "info"]).unwrap();
        assert!(info.contains("cluster_state:ok"), "{ip}: {info}");
        assert!(info.contains("cluster_known_nodes:6"), "{ip}: {info}");
        assert_eq!(
            cli(&ip, &password, &with_cert, &["ping"]).as_deref(),
            Ok("PONG")
        );
        let plain = cli(&ip, &password, &[], &["ping"]);
        assert!(plain.is_err(), "{ip}: plaintext answered {plain:?}");
        let anonymous = cli(&ip, &password, &without_cert, &["ping"]);
        assert_ne!(
            anonymous.as_deref(),
            Ok("PONG"),
            "{ip}: no client certificate"
        );
    }
    // Replication runs over TLS: every leader has its follower online.
    let leaders: Vec<String> = members
        .iter()
        .filter_map(pod_ip)
        .filter(|ip| {
            cli(ip, &password, &with_cert, &["role"]).is_ok_and(|r| r.starts_with("master"))
        })
        .collect();
    assert_eq!(leaders.len(), 3, "{leaders:?}");
    for ip in &leaders {
        let replication = cli(ip, &password, &with_cert, &["info", "replication"]).unwrap();
        assert!(
            replication.contains("connected_slaves:1"),
            "{ip}: {replication}"
        );
        assert!(replication.contains("state=online"), "{ip}: {replication}");
    }

    // Switching TLS off is refused at admission.
    let off = json!({"spec": {"tls": null}});
    let refused = api
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&off))
        .await
        .expect_err("removing spec.tls is refused");
    assert!(refused.to_string().contains("spec.tls"), "{refused}");

    let _ = std::fs::remove_dir_all(&dir);
    ns.cleanup().await;
}
