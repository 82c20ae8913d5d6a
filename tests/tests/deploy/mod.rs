//! Reading what `deploy/` declares: the Dockerfile's binaries, the Kustomize
//! base and overlays, and the workspace's `[[bin]]` targets, so tests can
//! check that they agree with each other and with the config model.

#![allow(dead_code)]

use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

pub fn kustomize_dir(rel: &str) -> PathBuf {
    repo_root().join("deploy/kustomize").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every YAML document in `path`.
pub fn yaml_docs(path: &Path) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(&read(path))
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// A kustomization's own file.
pub fn kustomization(dir: &Path) -> Value {
    yaml_docs(&dir.join("kustomization.yaml")).pop().expect("a kustomization document")
}

/// The documents of the plain-file resources a kustomization lists (directories skipped).
pub fn resources(dir: &Path) -> Vec<Value> {
    let k = kustomization(dir);
    let mut out = Vec::new();
    for r in k["resources"].as_sequence().expect("resources list") {
        let path = dir.join(r.as_str().expect("resource path"));
        assert!(path.exists(), "{} lists {} which does not exist", dir.display(), path.display());
        if path.is_file() {
            out.extend(yaml_docs(&path));
        }
    }
    out
}

pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect()
}

pub fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().expect("metadata.name")
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().map(|s| s.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// An env entry of a container: a literal value or a Secret reference.
#[derive(Debug, Clone)]
pub struct EnvVar {
    pub name: String,
    pub secret_key: Option<String>,
    pub optional: bool,
}

/// The one container of a Deployment, as the tests need it.
#[derive(Debug, Clone)]
pub struct Workload {
    pub deployment: String,
    pub labels: Value,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub ports: Vec<(String, u16)>,
    pub env: Vec<EnvVar>,
    pub readiness: (String, String),
    pub liveness: (String, String),
    pub grace_seconds: u64,
    pub pre_stop_seconds: u64,
    pub config_mount: String,
    pub pod: Value,
    pub container: Value,
}

impl Workload {
    pub fn from_deployment(d: &Value) -> Workload {
        let pod = &d["spec"]["template"]["spec"];
        let containers = pod["containers"].as_sequence().expect("containers");
        assert_eq!(containers.len(), 1, "{}: one container per pod", name(d));
        let c = &containers[0];
        let probe = |p: &Value| {
            (
                p["httpGet"]["path"].as_str().unwrap_or_default().to_string(),
                p["httpGet"]["port"].as_str().unwrap_or_default().to_string(),
            )
        };
        let env = c["env"]
            .as_sequence()
            .map(|s| {
                s.iter()
                    .map(|e| EnvVar {
                        name: e["name"].as_str().expect("env name").to_string(),
                        secret_key: e["valueFrom"]["secretKeyRef"]["key"].as_str().map(str::to_string),
                        optional: e["valueFrom"]["secretKeyRef"]["optional"].as_bool().unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mount = c["volumeMounts"]
            .as_sequence()
            .and_then(|m| m.iter().find(|m| m["name"].as_str() == Some("config")))
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_default()
            .to_string();
        Workload {
            deployment: name(d).to_string(),
            labels: d["spec"]["template"]["metadata"]["labels"].clone(),
            command: strings(&c["command"]),
            args: strings(&c["args"]),
            ports: c["ports"]
                .as_sequence()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            (
                                p["name"].as_str().unwrap_or_default().to_string(),
                                p["containerPort"].as_u64().expect("containerPort") as u16,
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            env,
            readiness: probe(&c["readinessProbe"]),
            liveness: probe(&c["livenessProbe"]),
            grace_seconds: pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30),
            pre_stop_seconds: c["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap_or(0),
            config_mount: mount,
            pod: pod.clone(),
            container: c.clone(),
        }
    }

    /// The binary's file name (`clawhive-gateway`).
    pub fn binary(&self) -> &str {
        self.command.first().and_then(|c| c.rsplit('/').next()).expect("a command")
    }

    pub fn port(&self, name: &str) -> Option<u16> {
        self.ports.iter().find(|(n, _)| n == name).map(|(_, p)| *p)
    }

    /// The config file the args name, mapped from the pod's mount path.
    pub fn config_arg(&self) -> &str {
        let i = self.args.iter().position(|a| a == "--config").expect("--config in args");
        &self.args[i + 1]
    }
}

pub fn base_workloads() -> Vec<Workload> {
    of_kind(&resources(&kustomize_dir("base")), "Deployment").into_iter().map(Workload::from_deployment).collect()
}

pub fn workload(name: &str) -> Workload {
    base_workloads().into_iter().find(|w| w.deployment == name).unwrap_or_else(|| panic!("no Deployment {name}"))
}

/// Keys of an env file (`KEY=value` lines).
pub fn env_file_keys(path: &Path) -> BTreeSet<String> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once('=').map(|(k, _)| k).unwrap_or(l).trim().to_string())
        .collect()
}

/// Binaries the image builds (`--bin X`) and installs (`COPY … /usr/local/bin/X`).
pub fn dockerfile_binaries() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = read(&repo_root().join("deploy/docker/Dockerfile"));
    let built = text
        .split("--bin ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|s| s.trim_end_matches('\\').to_string())
        .collect();
    let installed = text
        .lines()
        .filter(|l| l.starts_with("COPY --from=builder"))
        .filter_map(|l| l.split_whitespace().last())
        .filter_map(|dst| dst.strip_prefix("/usr/local/bin/"))
        .map(str::to_string)
        .collect();
    (built, installed)
}

/// `[[bin]]` targets (or the implicit `src/main.rs` one) of the workspace members under `services/`.
pub fn workspace_service_binaries() -> BTreeSet<String> {
    let root = repo_root();
    let manifest: toml::Table = read(&root.join("Cargo.toml")).parse().expect("workspace Cargo.toml");
    let members = manifest["workspace"]["members"].as_array().expect("members").clone();
    let mut bins = BTreeSet::new();
    for m in members.iter().filter_map(|m| m.as_str()).filter(|m| m.starts_with("services/")) {
        let pkg: toml::Table = read(&root.join(m).join("Cargo.toml")).parse().expect("member Cargo.toml");
        match pkg.get("bin").and_then(|b| b.as_array()) {
            Some(list) => bins.extend(list.iter().filter_map(|b| b["name"].as_str()).map(str::to_string)),
            None if root.join(m).join("src/main.rs").exists() => {
                bins.insert(pkg["package"]["name"].as_str().expect("package name").to_string());
            }
            None => {}
        }
    }
    bins
}

/// The port of a `host:port` address.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {addr:?}"))
}
