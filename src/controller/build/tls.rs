//! What `spec.tls` changes in the objects built for a cluster: the Secret's volume in each member
//! Pod, redis-server's TLS settings, `redis-cli`'s TLS options in the scripts and probes, and
//! the plaintext port when one is asked for. Every function here leaves its input as it is when
//! `spec.tls` is unset, so a cluster without TLS gets exactly the objects it got before TLS
//! existed (upgrading the operator rolls nothing).
//!
//! The TLS settings are redis-server arguments in the container's command, not redis.conf lines
//! in the ConfigMap: the Pod template is what the member revision hashes, so changing
//! `clientAuth` or `plaintextPort` rolls the members like any other restart-requiring change.
//! Arguments are read after the config file (and its `include`), so they win.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{SecretVolumeSource, Volume, VolumeMount};

use crate::controller::config::REDIS_PORT;
use crate::crd::{RedisCluster, TlsSpec};

/// Where the TLS Secret is mounted. Not under `/etc/redis` (the ConfigMap's volume): a mount
/// point inside another volume would have to be made inside that volume.
pub const TLS_DIR: &str = "/etc/redis-tls";
/// Key of the certificate chain in the Secret (cert-manager's `kubernetes.io/tls` shape).
pub const CERT_KEY: &str = "tls.crt";
/// Key of the private key.
pub const KEY_KEY: &str = "tls.key";
/// Key of the CA bundle members and the operator trust.
pub const CA_KEY: &str = "ca.crt";
/// The plaintext port served besides TLS when `spec.tls.plaintextPort` is set.
pub const PLAINTEXT_PORT: i32 = 6380;
/// Name of the Secret's volume in the Pod.
const VOLUME: &str = "tls";
/// How redis-server is started by the entry script (`config::ENTRY_SCRIPT`'s last line).
const EXEC_REDIS: &str = "exec redis-server /etc/redis/redis.conf";

/// The cluster's TLS settings, when it has them.
pub fn of(cluster: &RedisCluster) -> Option<&TlsSpec> {
    cluster.spec.tls.as_ref()
}

/// The Secret's volume: read-only, files readable by Redis's group only (the Pod's fsGroup).
pub fn volume(tls: &TlsSpec) -> Volume {
    Volume {
        name: VOLUME.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(tls.secret_name.clone()),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The Secret's mount in the redis container.
pub fn mount() -> VolumeMount {
    VolumeMount {
        name: VOLUME.to_string(),
        mount_path: TLS_DIR.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// redis-server's TLS settings: TLS on the client port (the port clients, the Services and the
/// operator already use), plaintext off or on 6380, and TLS for replication and the cluster
/// bus (whose port stays client port + 10000). `tls-auth-clients` is always written: Redis's
/// default is `yes`.
pub fn server_args(tls: &TlsSpec) -> String {
    let plaintext = if tls.plaintext_port {
        PLAINTEXT_PORT
    } else {
        0
    };
    let auth_clients = if tls.client_auth { "yes" } else { "no" };
    format!(
        "--port {plaintext} --tls-port {REDIS_PORT} \
         --tls-cert-file {TLS_DIR}/{CERT_KEY} --tls-key-file {TLS_DIR}/{KEY_KEY} \
         --tls-ca-cert-file {TLS_DIR}/{CA_KEY} \
         --tls-replication yes --tls-cluster yes --tls-auth-clients {auth_clients}"
    )
}

/// `redis-cli`'s options to reach a member: trust the CA, and present the member's own
/// certificate (asked for only under `clientAuth`; presenting it always means changing
/// `clientAuth` never locks the scripts out of members still running the old setting).
/// redis-cli checks the chain, not the host name, so `-h <ip>` and the local port work.
pub fn cli_args() -> String {
    format!(
        "--tls --cacert {TLS_DIR}/{CA_KEY} --cert {TLS_DIR}/{CERT_KEY} --key {TLS_DIR}/{KEY_KEY}"
    )
}

/// A shell script with every `redis-cli` call given [`cli_args`] when TLS is on; the script
/// itself when it is off.
pub fn script<'a>(script: &'a str, tls: Option<&TlsSpec>) -> Cow<'a, str> {
    match tls {
        None => Cow::Borrowed(script),
        Some(_) => Cow::Owned(script.replace("redis-cli ", &format!("redis-cli {} ", cli_args()))),
    }
}

/// The container's entry script: its `redis-cli` calls (the start gate) as [`script`] makes
/// them, and redis-server started with [`server_args`] when TLS is on.
pub fn entry_script<'a>(entry: &'a str, tls: Option<&TlsSpec>) -> Cow<'a, str> {
    match tls {
        None => Cow::Borrowed(entry),
        Some(spec) => Cow::Owned(
            script(entry, tls).replace(EXEC_REDIS, &format!("{EXEC_REDIS} {}", server_args(spec))),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::config;

    fn spec(client_auth: bool, plaintext_port: bool) -> TlsSpec {
        TlsSpec {
            secret_name: "demo-tls".into(),
            client_auth,
            plaintext_port,
            server_name: None,
        }
    }

    #[test]
    fn server_args_follow_the_spec() {
        // (clientAuth, plaintextPort, expected fragments)
        let cases = [
            (false, false, ["--port 0 ", "--tls-auth-clients no"]),
            (true, false, ["--port 0 ", "--tls-auth-clients yes"]),
            (false, true, ["--port 6380 ", "--tls-auth-clients no"]),
            (true, true, ["--port 6380 ", "--tls-auth-clients yes"]),
        ];
        for (client_auth, plaintext, fragments) in cases {
            let args = server_args(&spec(client_auth, plaintext));
            for f in fragments {
                assert!(args.contains(f), "{client_auth} {plaintext}: {args}");
            }
            for f in [
                "--tls-port 6379 ",
                "--tls-cert-file /etc/redis-tls/tls.crt ",
                "--tls-key-file /etc/redis-tls/tls.key ",
                "--tls-ca-cert-file /etc/redis-tls/ca.crt ",
                "--tls-replication yes ",
                "--tls-cluster yes ",
            ] {
                assert!(args.contains(f), "{f}: {args}");
            }
        }
    }

    /// Every `redis-cli` of every script speaks TLS, and redis-server gets the TLS settings.
    #[test]
    fn scripts_speak_tls_everywhere() {
        let tls = spec(true, false);
        let scripts = [
            entry_script(config::ENTRY_SCRIPT, Some(&tls)).into_owned(),
            script(config::PRE_STOP_SCRIPT, Some(&tls)).into_owned(),
            script(config::READINESS_SCRIPT, Some(&tls)).into_owned(),
        ];
        for s in &scripts {
            let calls = s.matches("redis-cli").count();
            assert!(calls > 0, "{s}");
            assert_eq!(
                s.matches(&format!("redis-cli {}", cli_args())).count(),
                calls,
                "{s}"
            );
        }
        let entry = &scripts[0];
        assert!(
            entry.contains(&format!("{EXEC_REDIS} {}\n", server_args(&tls))),
            "{entry}"
        );
        assert!(entry.contains("timeout 2 redis-cli --tls --cacert /etc/redis-tls/ca.crt"));
    }

    #[test]
    fn scripts_are_untouched_without_tls() {
        for s in [
            config::ENTRY_SCRIPT,
            config::PRE_STOP_SCRIPT,
            config::READINESS_SCRIPT,
        ] {
            assert!(matches!(script(s, None), Cow::Borrowed(b) if b == s));
            assert!(matches!(entry_script(s, None), Cow::Borrowed(b) if b == s));
        }
        assert!(config::ENTRY_SCRIPT.contains(&format!("{EXEC_REDIS}\n")));
    }

    fn tls_cluster(tls: serde_json::Value) -> RedisCluster {
        let spec: crate::crd::RedisClusterSpec =
            serde_json::from_value(serde_json::json!({"leaders": 3, "tls": tls})).unwrap();
        let mut c = RedisCluster::new("demo", spec);
        c.metadata.namespace = Some("ns".into());
        c
    }

    fn member() -> crate::controller::build::pod::MemberPod<'static> {
        crate::controller::build::pod::MemberPod {
            shard: 0,
            member: 0,
            name: "demo-s0-m0-abcde".into(),
            node: "n",
            pvc: None,
            auth_secret: "demo-auth",
            auth_key: "password",
            revision: "r",
            live_config: "{}",
        }
    }

    /// The member Pod mounts the Secret, runs the TLS scripts, and opens 6380 only when asked.
    #[test]
    fn member_pods_carry_tls() {
        use crate::controller::build::{network_policy, pod, service};
        for plaintext in [false, true] {
            let c = tls_cluster(
                serde_json::json!({"secretName": "demo-tls", "plaintextPort": plaintext}),
            );
            let spec = pod::build(&c, &member()).spec.unwrap();
            let volume = spec.volumes.unwrap().into_iter().find(|v| v.name == VOLUME);
            assert_eq!(volume, Some(volume_of("demo-tls")));
            let container = &spec.containers[0];
            assert!(container.volume_mounts.clone().unwrap().contains(&mount()));
            let command = container.command.clone().unwrap().join(" ");
            assert!(command.contains("--tls-port 6379"), "{command}");
            let port = if plaintext {
                "--port 6380 "
            } else {
                "--port 0 "
            };
            assert!(command.contains(port), "{command}");
            let readiness = container.readiness_probe.clone().unwrap().exec.unwrap();
            assert!(readiness.command.unwrap()[2].contains("redis-cli --tls "));
            let pre_stop = container.lifecycle.clone().unwrap().pre_stop.unwrap();
            assert!(pre_stop.exec.unwrap().command.unwrap()[2].contains("redis-cli --tls "));
            let ports: Vec<i32> = container
                .ports
                .clone()
                .unwrap()
                .iter()
                .map(|p| p.container_port)
                .collect();
            let service_ports: Vec<i32> = service::client(&c)
                .spec
                .unwrap()
                .ports
                .unwrap()
                .iter()
                .map(|p| p.port)
                .collect();
            let policy = network_policy::build(&c, None)
                .spec
                .unwrap()
                .ingress
                .unwrap();
            let policy_ports = policy[0].ports.clone().unwrap().len();
            if plaintext {
                assert_eq!(ports, [6379, 16379, 6380]);
                assert_eq!(service_ports, [6379, 6380]);
                assert_eq!(policy_ports, 2);
            } else {
                assert_eq!(ports, [6379, 16379]);
                assert_eq!(service_ports, [6379]);
                assert_eq!(policy_ports, 1);
            }
        }
    }

    fn volume_of(secret: &str) -> Volume {
        volume(&TlsSpec {
            secret_name: secret.into(),
            ..spec(false, false)
        })
    }

    /// What a member is built from changes with every TLS setting the members read, and not
    /// with `serverName` (only the operator reads it).
    #[test]
    fn the_revision_follows_the_member_side_settings() {
        use crate::controller::observe::revision;
        let base = serde_json::json!({"secretName": "demo-tls"});
        let revision_of = |tls: serde_json::Value| revision::target(&tls_cluster(tls)).revision;
        let r = revision_of(base.clone());
        for changed in [
            serde_json::json!({"secretName": "other"}),
            serde_json::json!({"secretName": "demo-tls", "clientAuth": true}),
            serde_json::json!({"secretName": "demo-tls", "plaintextPort": true}),
        ] {
            assert_ne!(revision_of(changed.clone()), r, "{changed}");
        }
        assert_eq!(
            revision_of(serde_json::json!({"secretName": "demo-tls", "serverName": "x.ns.svc"})),
            r
        );
    }

    #[test]
    fn the_secret_is_mounted_read_only_for_redis_only() {
        let v = volume(&spec(false, false));
        let s = v.secret.unwrap();
        assert_eq!(s.secret_name.as_deref(), Some("demo-tls"));
        assert_eq!(s.default_mode, Some(0o440));
        assert_eq!(mount().read_only, Some(true));
        assert_eq!(mount().name, v.name);
    }
}

/// Without `spec.tls`, every object is the one the operator built before TLS existed: the
/// fingerprints below were taken from the builders as they were then, and changed since only
/// on purpose: the start gate's and preStop's epochs (the hollow promotion), and the Pods'
/// node-loss tolerations (which the revision leaves out, so that change rolls nothing). If the
/// revision changes, every running cluster rolls on upgrade: say so in the change.
#[cfg(test)]
mod unchanged_without_tls {
    use crate::controller::build::pod::{self, MemberPod};
    use crate::controller::build::{network_policy, service};
    use crate::controller::config;
    use crate::controller::observe::revision;
    use crate::crd::{RedisCluster, RedisClusterSpec};

    fn cluster(spec: serde_json::Value) -> RedisCluster {
        let spec: RedisClusterSpec = serde_json::from_value(spec).unwrap();
        let mut c = RedisCluster::new("demo", spec);
        c.metadata.namespace = Some("ns".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    fn fingerprint(c: &RedisCluster) -> String {
        let member = MemberPod {
            shard: 1,
            member: 0,
            name: "demo-s1-m0-abcde".into(),
            node: "node-a1",
            pvc: c
                .spec
                .storage
                .as_ref()
                .map(|_| "data-demo-s1-m0-abcde".into()),
            auth_secret: "demo-auth",
            auth_key: "password",
            revision: "r",
            live_config: "{}",
        };
        let objects = serde_json::json!([
            pod::build(c, &member),
            service::client(c),
            service::headless(c),
            network_policy::build(c, Some("ops")),
            revision::target(c).revision,
        ]);
        config::hash(&objects.to_string())
    }

    /// A minimal spec and one that sets most fields.
    fn specs() -> [serde_json::Value; 2] {
        [
            serde_json::json!({"leaders": 3}),
            serde_json::json!({"leaders": 4, "followersPerLeader": 2,
                "storage": {"size": "1Gi"}, "config": {"maxmemory": "1gb", "databases": "4"},
                "pod": {"labels": {"team": "a"}, "priorityClassName": "high"},
                "auth": {"secretName": "mine"},
                "networkPolicy": {"clients": []}}),
        ]
    }

    #[test]
    fn objects_without_tls_are_the_ones_built_before_tls() {
        let golden = ["7c58144ab890c267", "02af75ea6ded383b"];
        for (spec, golden) in specs().into_iter().zip(golden) {
            assert_eq!(fingerprint(&cluster(spec.clone())), golden, "{spec}");
        }
    }

    /// The revision members carry in their annotation: the Pods now tolerate a lost node for
    /// good (their fingerprint above changed with them), but the revision leaves those
    /// tolerations out, so running clusters do not roll on upgrade.
    #[test]
    fn the_revision_is_the_one_before_the_node_loss_tolerations() {
        let golden = ["c8024f37f37fb248", "dd8c0c1dcbd4e1e2"];
        for (spec, golden) in specs().into_iter().zip(golden) {
            let revision = revision::target(&cluster(spec.clone())).revision;
            assert_eq!(revision, golden, "{spec}");
        }
    }
}
