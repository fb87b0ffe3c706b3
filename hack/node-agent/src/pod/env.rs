//! Container environment: literal values with `$(VAR)` expansion, downward API field and
//! resource references, ConfigMap/Secret keys and `envFrom`, with the kubelet's messages
//! for what is missing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Kubernetes' `$(VAR)` expansion (k8s.io/kubernetes third_party/forked/golang/expansion):
/// unknown references stay as written, `$$` is an escaped `$`, anything else is literal.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest[1..].find(')') {
                    Some(close) => {
                        let name = &rest[1..1 + close];
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 2
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // A lone `$` before a multi-byte char must not split it.
                    let ch = rest.chars().next().unwrap_or('$');
                    out.push('$');
                    out.push(ch);
                    ch.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

/// Everything a pod references by name, fetched once per sync so the pure resolution
/// below can report exactly what is missing.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    pub configmaps: HashMap<String, Option<ConfigMap>>,
    pub secrets: HashMap<String, Option<Secret>>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct References {
    pub configmaps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

pub fn references(pod: &Pod) -> References {
    let mut r = References::default();
    let Some(spec) = &pod.spec else { return r };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        for e in c.env.iter().flatten() {
            if let Some(vf) = &e.value_from {
                if let Some(k) = &vf.config_map_key_ref {
                    r.configmaps.insert(k.name.clone());
                }
                if let Some(k) = &vf.secret_key_ref {
                    r.secrets.insert(k.name.clone());
                }
            }
        }
        for ef in c.env_from.iter().flatten() {
            if let Some(k) = &ef.config_map_ref {
                r.configmaps.insert(k.name.clone());
            }
            if let Some(k) = &ef.secret_ref {
                r.secrets.insert(k.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            r.configmaps.insert(cm.name.clone());
        }
        if let Some(s) = &v.secret
            && let Some(n) = &s.secret_name
        {
            r.secrets.insert(n.clone());
        }
        if let Some(p) = &v.projected {
            for src in p.sources.iter().flatten() {
                if let Some(cm) = &src.config_map {
                    r.configmaps.insert(cm.name.clone());
                }
                if let Some(s) = &src.secret {
                    r.secrets.insert(s.name.clone());
                }
            }
        }
    }
    r
}

impl Objects {
    pub fn configmap_data(&self, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let cm = self.configmaps.get(name)?.as_ref()?;
        let mut out: BTreeMap<String, Vec<u8>> = cm
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        for (k, v) in cm.binary_data.iter().flatten() {
            out.insert(k.clone(), v.0.clone());
        }
        Some(out)
    }

    pub fn secret_data(&self, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
        let s = self.secrets.get(name)?.as_ref()?;
        let mut out: BTreeMap<String, Vec<u8>> = s
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        // stringData is write-only on the server, but objects built in tests may carry it.
        for (k, v) in s.string_data.iter().flatten() {
            out.insert(k.clone(), v.clone().into_bytes());
        }
        Some(out)
    }
}

/// The values that only exist once the pod has a sandbox and a node.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub host_ip: String,
    pub pod_ip: String,
    pub node_cpu: String,
    pub node_memory: String,
}

fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let inner = path
        .strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    inner
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
}

/// Downward API `fieldRef` values, as the kubelet's podFieldSelectorRuntimeValue.
pub fn field_ref(pod: &Pod, facts: &PodFacts, path: &str) -> Result<String, String> {
    let md = &pod.metadata;
    let spec = pod.spec.as_ref();
    let empty = BTreeMap::new();
    let labels = md.labels.as_ref().unwrap_or(&empty);
    let annotations = md.annotations.as_ref().unwrap_or(&empty);
    let v = match path {
        "metadata.name" => md.name.clone().unwrap_or_default(),
        "metadata.namespace" => md.namespace.clone().unwrap_or_default(),
        "metadata.uid" => md.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(labels),
        "metadata.annotations" => format_map(annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone(),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone(),
        _ => {
            if let Some(k) = subscript(path, "metadata.labels") {
                labels.get(k).cloned().unwrap_or_default()
            } else if let Some(k) = subscript(path, "metadata.annotations") {
                annotations.get(k).cloned().unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldPath: {path}"));
            }
        }
    };
    Ok(v)
}

/// Parses a resource quantity into its value in base units (cores, bytes).
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(num * mult)
}

/// `resourceFieldRef`: the container's limit or request, defaulting limits to the node's
/// allocatable, divided by `divisor` and rounded up like the kubelet does.
pub fn resource_field_ref(
    container: &Container,
    facts: &PodFacts,
    resource: &str,
    divisor: Option<&Quantity>,
) -> Result<String, String> {
    let res = container.resources.as_ref();
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource: {resource}"))?;
    let from = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported container resource: {resource}")),
    };
    let node_default = match name {
        "cpu" => facts.node_cpu.as_str(),
        "memory" => facts.node_memory.as_str(),
        "ephemeral-storage" => "0",
        _ => return Err(format!("unsupported container resource: {resource}")),
    };
    let raw = from.and_then(|m| m.get(name)).map(|q| q.0.as_str());
    let value = match (raw, kind) {
        (Some(v), _) => v,
        (None, "limits") => node_default,
        // An unset request reads as 0, except cpu which the kubelet reports as 0 too.
        (None, _) => "0",
    };
    let value = parse_quantity(value).ok_or_else(|| format!("invalid quantity {value:?}"))?;
    let divisor = divisor.map_or("1", |d| d.0.as_str());
    let divisor = parse_quantity(divisor)
        .filter(|d| *d > 0.0)
        .ok_or_else(|| format!("invalid divisor {divisor:?}"))?;
    // Rounding at 1e-9 keeps 0.1/0.1-style float noise from bumping the ceiling.
    let v = ((value / divisor) * 1e9).round() / 1e9;
    Ok(format!("{}", v.ceil() as i64))
}

/// The container's own environment in definition order (envFrom first, then env), with
/// later definitions of a name replacing earlier ones. Errors carry the kubelet's wording
/// and become `CreateContainerConfigError`.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    objects: &Objects,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(slot) = env.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v;
        } else {
            env.push((k, v));
        }
    };
    for ef in container.env_from.iter().flatten() {
        let prefix = ef.prefix.clone().unwrap_or_default();
        if let Some(r) = &ef.config_map_ref {
            match objects.configmap_data(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut env, format!("{prefix}{k}"), lossy(v));
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &ef.secret_ref {
            match objects.secret_data(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut env, format!("{prefix}{k}"), lossy(v));
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(vf) = &e.value_from {
            if let Some(f) = &vf.field_ref {
                field_ref(pod, facts, &f.field_path)?
            } else if let Some(r) = &vf.resource_field_ref {
                let target = match r.container_name.as_deref() {
                    None | Some("") => container,
                    Some(name) => find_container(pod, name)
                        .ok_or_else(|| format!("container {name} not found in pod"))?,
                };
                resource_field_ref(target, facts, &r.resource, r.divisor.as_ref())?
            } else if let Some(r) = &vf.config_map_key_ref {
                match objects.configmap_data(&r.name) {
                    Some(data) => match data.get(&r.key) {
                        Some(v) => lossy(v.clone()),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                }
            } else if let Some(r) = &vf.secret_key_ref {
                match objects.secret_data(&r.name) {
                    Some(data) => match data.get(&r.key) {
                        Some(v) => lossy(v.clone()),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                }
            } else {
                return Err(format!("env var {}: unsupported valueFrom", e.name));
            }
        } else {
            let raw = e.value.clone().unwrap_or_default();
            let known = env.clone();
            expand(&raw, &|name| {
                known
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        set(&mut env, e.name.clone(), value);
    }
    Ok(env)
}

fn lossy(v: Vec<u8>) -> String {
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// `command`/`args` are expanded against the container's final environment.
pub fn expand_all(items: &[String], env: &[(String, String)]) -> Vec<String> {
    items
        .iter()
        .map(|s| {
            expand(s, &|name| {
                env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector,
        ResourceFieldSelector, ResourceRequirements, SecretEnvSource, SecretKeySelector,
    };
    use kube::api::ObjectMeta;

    fn vars() -> impl Fn(&str) -> Option<String> {
        |n: &str| match n {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_matches_kubernetes() {
        let f = vars();
        let cases = [
            ("$(A)", "a"),
            ("x$(A)y", "xay"),
            ("$(B)", "$(B)"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$a"),
            ("$A", "$A"),
            ("$", "$"),
            ("x$", "x$"),
            ("$(A", "$(A"),
            ("$()", "$()"),
            ("$(EMPTY)-", "-"),
            ("$(A)$(A)", "aa"),
            ("héllo $(A) wörld", "héllo a wörld"),
            ("$é", "$é"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &f), want, "input {input:?}");
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("redis-0".into()),
                namespace: Some("ns1".into()),
                uid: Some("u-1".into()),
                labels: Some(BTreeMap::from([("app".into(), "redis".into())])),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                node_name: Some("n1".into()),
                containers: vec![],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn facts() -> PodFacts {
        PodFacts {
            host_ip: "10.244.1.1".into(),
            pod_ip: "10.244.1.5".into(),
            node_cpu: "8".into(),
            node_memory: "16Gi".into(),
        }
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn lit(name: &str, v: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(v.into()),
            ..Default::default()
        }
    }

    #[test]
    fn env_resolves_fields_literals_and_references() {
        let c = Container {
            name: "redis".into(),
            env: Some(vec![
                field("POD_IP", "status.podIP"),
                field("NAME", "metadata.name"),
                field("NS", "metadata.namespace"),
                field("NODE", "spec.nodeName"),
                field("APP", "metadata.labels['app']"),
                lit("ADDR", "$(POD_IP):6379"),
                lit("LATER", "$(UNDEFINED_YET)"),
                lit("UNDEFINED_YET", "x"),
            ]),
            ..Default::default()
        };
        let env = container_env(&pod(), &c, &facts(), &Objects::default()).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("POD_IP"), Some("10.244.1.5"));
        assert_eq!(get("NAME"), Some("redis-0"));
        assert_eq!(get("NS"), Some("ns1"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(get("APP"), Some("redis"));
        assert_eq!(get("ADDR"), Some("10.244.1.5:6379"));
        assert_eq!(get("LATER"), Some("$(UNDEFINED_YET)"));
    }

    #[test]
    fn missing_objects_give_kubelet_messages() {
        let c = Container {
            name: "redis".into(),
            env: Some(vec![EnvVar {
                name: "PW".into(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "auth".into(),
                        key: "password".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let mut objs = Objects::default();
        objs.secrets.insert("auth".into(), None);
        assert_eq!(
            container_env(&pod(), &c, &facts(), &objs).unwrap_err(),
            "secret \"auth\" not found"
        );
        objs.secrets.insert(
            "auth".into(),
            Some(Secret {
                data: Some(BTreeMap::from([(
                    "other".into(),
                    ByteString(b"x".to_vec()),
                )])),
                ..Default::default()
            }),
        );
        assert_eq!(
            container_env(&pod(), &c, &facts(), &objs).unwrap_err(),
            "couldn't find key password in Secret ns1/auth"
        );
        objs.secrets.insert(
            "auth".into(),
            Some(Secret {
                data: Some(BTreeMap::from([(
                    "password".into(),
                    ByteString(b"s3cret".to_vec()),
                )])),
                ..Default::default()
            }),
        );
        assert_eq!(
            container_env(&pod(), &c, &facts(), &objs).unwrap(),
            vec![("PW".to_string(), "s3cret".to_string())]
        );
    }

    #[test]
    fn optional_configmap_refs_are_skipped() {
        let c = Container {
            name: "redis".into(),
            env: Some(vec![EnvVar {
                name: "X".into(),
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "cfg".into(),
                        key: "k".into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            env_from: Some(vec![
                EnvFromSource {
                    config_map_ref: Some(k8s_openapi::api::core::v1::ConfigMapEnvSource {
                        name: "cfg".into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                },
                EnvFromSource {
                    prefix: Some("S_".into()),
                    secret_ref: Some(SecretEnvSource {
                        name: "sec".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let mut objs = Objects::default();
        objs.configmaps.insert("cfg".into(), None);
        objs.secrets.insert(
            "sec".into(),
            Some(Secret {
                data: Some(BTreeMap::from([("a".into(), ByteString(b"1".to_vec()))])),
                ..Default::default()
            }),
        );
        let env = container_env(&pod(), &c, &facts(), &objs).unwrap();
        assert_eq!(env, vec![("S_a".to_string(), "1".to_string())]);
        objs.configmaps.remove("cfg");
        // Not fetched at all reads as missing, which is what a failed fetch must look like.
        assert!(container_env(&pod(), &c, &facts(), &objs).is_ok());
    }

    #[test]
    fn resource_refs_default_to_node_allocatable() {
        let mut c = Container {
            name: "redis".into(),
            ..Default::default()
        };
        let f = facts();
        assert_eq!(resource_field_ref(&c, &f, "limits.cpu", None).unwrap(), "8");
        assert_eq!(
            resource_field_ref(&c, &f, "limits.memory", Some(&Quantity("1Mi".into()))).unwrap(),
            "16384"
        );
        c.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("cpu".into(), Quantity("500m".into()))])),
            requests: Some(BTreeMap::from([(
                "memory".into(),
                Quantity("100Mi".into()),
            )])),
            ..Default::default()
        });
        assert_eq!(resource_field_ref(&c, &f, "limits.cpu", None).unwrap(), "1");
        assert_eq!(
            resource_field_ref(&c, &f, "limits.cpu", Some(&Quantity("1m".into()))).unwrap(),
            "500"
        );
        assert_eq!(
            resource_field_ref(&c, &f, "requests.memory", Some(&Quantity("1Mi".into()))).unwrap(),
            "100"
        );
        let _ = ResourceFieldSelector::default();
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(
            parse_quantity("16Gi"),
            Some(16.0 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("x"), None);
    }

    #[test]
    fn references_cover_env_and_volumes() {
        let mut p = pod();
        let spec = p.spec.as_mut().unwrap();
        spec.containers.push(Container {
            name: "c".into(),
            env: Some(vec![EnvVar {
                name: "X".into(),
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "a".into(),
                        key: "k".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        spec.volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
            name: "v".into(),
            secret: Some(k8s_openapi::api::core::v1::SecretVolumeSource {
                secret_name: Some("s".into()),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        let r = references(&p);
        assert_eq!(r.configmaps, BTreeSet::from(["a".to_string()]));
        assert_eq!(r.secrets, BTreeSet::from(["s".to_string()]));
    }
}
