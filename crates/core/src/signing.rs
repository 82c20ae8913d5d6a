//! Signed principals on bus envelopes.
//!
//! Ingresses sign each `AgentRequest` with HMAC-SHA256 under a key shared by
//! the services (a Kubernetes Secret / env var). The MAC covers the principal
//! and every field that decides what runs and where the answer goes, so a
//! request published straight to NATS with a forged or altered identity,
//! session, text or reply route is rejected by the worker.

use clawhive_proto::v1 as pb;
use hmac::{Hmac, Mac};
use prost::Message;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted (bytes).
pub const MIN_KEY_LEN: usize = 32;

#[derive(Clone)]
pub struct EnvelopeSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for EnvelopeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvelopeSigner(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the envelope is not signed")]
    Missing,
    #[error("the envelope signature does not match its contents")]
    Mismatch,
}

impl EnvelopeSigner {
    /// A signer with `key`; `None` when the key is shorter than [`MIN_KEY_LEN`].
    pub fn new(key: &[u8]) -> Option<Self> {
        (key.len() >= MIN_KEY_LEN).then(|| Self { key: key.to_vec() })
    }

    /// Sets `req.signature`.
    pub fn sign(&self, req: &mut pb::AgentRequest) {
        req.signature = self.mac(req);
    }

    /// Checks `req.signature` in constant time.
    pub fn verify(&self, req: &pb::AgentRequest) -> Result<(), SignatureError> {
        if req.signature.is_empty() {
            return Err(SignatureError::Missing);
        }
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&canonical(req));
        mac.verify_slice(&req.signature).map_err(|_| SignatureError::Mismatch)
    }

    fn mac(&self, req: &pb::AgentRequest) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&canonical(req));
        mac.finalize().into_bytes().to_vec()
    }
}

/// The signed bytes: the request without its signature, each field framed by
/// its length so no two different requests share an encoding.
fn canonical(req: &pb::AgentRequest) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    let mut out = Vec::with_capacity(256 + req.text.len());
    out.extend_from_slice(b"clawhive.v1.AgentRequest\0");
    put(&mut out, req.request_id.as_bytes());
    let p = req.principal.clone().unwrap_or_default();
    put(&mut out, p.tenant_id.as_bytes());
    put(&mut out, p.user_id.as_bytes());
    put(&mut out, &(p.roles.len() as u64).to_be_bytes());
    for r in &p.roles {
        put(&mut out, r.as_bytes());
    }
    put(&mut out, &(p.groups.len() as u64).to_be_bytes());
    for g in &p.groups {
        put(&mut out, g.as_bytes());
    }
    put(&mut out, p.display_name.as_bytes());
    put(&mut out, req.session_id.as_bytes());
    put(&mut out, req.agent_id.as_bytes());
    put(&mut out, req.text.as_bytes());
    put(&mut out, &req.reply_route.as_ref().map(|r| r.encode_to_vec()).unwrap_or_default());
    put(&mut out, &req.deadline_unix_ms.to_be_bytes());
    put(&mut out, &req.created_unix_ms.to_be_bytes());
    put(&mut out, &[u8::from(req.stream_deltas)]);
    put(&mut out, req.speaker.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::AgentRequest {
        pb::AgentRequest {
            request_id: "r1".into(),
            principal: Some(pb::Principal {
                tenant_id: "acme".into(),
                user_id: "alice".into(),
                roles: vec!["member".into()],
                ..Default::default()
            }),
            session_id: "s1".into(),
            agent_id: "default".into(),
            text: "hello".into(),
            deadline_unix_ms: 10,
            ..Default::default()
        }
    }

    #[test]
    fn signed_requests_verify_and_any_change_breaks_them() {
        let signer = EnvelopeSigner::new(&[7u8; 32]).unwrap();
        let mut req = request();
        assert_eq!(signer.verify(&req), Err(SignatureError::Missing));
        signer.sign(&mut req);
        assert_eq!(signer.verify(&req), Ok(()));

        type Tamper = Box<dyn Fn(&mut pb::AgentRequest)>;
        let tamper: Vec<Tamper> = vec![
            Box::new(|r| r.principal.as_mut().unwrap().user_id = "bob".into()),
            Box::new(|r| r.principal.as_mut().unwrap().tenant_id = "other".into()),
            Box::new(|r| r.principal.as_mut().unwrap().roles.push("admin".into())),
            Box::new(|r| r.session_id = "s2".into()),
            Box::new(|r| r.text = "hellp".into()),
            Box::new(|r| r.agent_id = "claude".into()),
            Box::new(|r| r.deadline_unix_ms += 1),
        ];
        for t in tamper {
            let mut forged = req.clone();
            t(&mut forged);
            assert_eq!(signer.verify(&forged), Err(SignatureError::Mismatch));
        }
        let other = EnvelopeSigner::new(&[8u8; 32]).unwrap();
        assert_eq!(other.verify(&req), Err(SignatureError::Mismatch));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(EnvelopeSigner::new(b"short").is_none());
    }
}

/// The signer configured by `security`: the key comes from the env var named
/// by `envelope_key_env` (looked up through `env`), else from the file named by
/// `envelope_key_file` (read through `read_file`; surrounding whitespace is
/// trimmed). `Ok(None)` means unsigned operation, allowed only while
/// `require_signed_envelopes` is off.
pub fn signer_from_sources(
    cfg: &crate::config::SecurityConfig,
    env: &dyn Fn(&str) -> Option<String>,
    read_file: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Option<EnvelopeSigner>, String> {
    let (key, source) = match env(&cfg.envelope_key_env).filter(|k| !k.is_empty()) {
        Some(k) => (Some(k), cfg.envelope_key_env.clone()),
        None if !cfg.envelope_key_file.is_empty() => {
            let text = read_file(&cfg.envelope_key_file)
                .map_err(|e| format!("security.envelope_key_file {}: {e}", cfg.envelope_key_file))?;
            (Some(text.trim().to_string()), cfg.envelope_key_file.clone())
        }
        None => (None, String::new()),
    };
    match key {
        Some(key) => EnvelopeSigner::new(key.as_bytes())
            .map(Some)
            .ok_or_else(|| format!("the envelope key in {source} must hold at least {MIN_KEY_LEN} bytes")),
        None if cfg.require_signed_envelopes => Err(format!(
            "security.require_signed_envelopes is on but neither {} nor security.envelope_key_file is set",
            cfg.envelope_key_env
        )),
        None => Ok(None),
    }
}

/// [`signer_from_sources`] with the process environment and file system.
pub fn signer_from_config(cfg: &crate::config::SecurityConfig) -> Result<Option<EnvelopeSigner>, String> {
    signer_from_sources(cfg, &|k| std::env::var(k).ok(), &|p| std::fs::read_to_string(p).map_err(|e| e.to_string()))
}

#[cfg(test)]
mod config_tests {
    use super::*;
    use crate::config::SecurityConfig;

    #[test]
    fn keys_come_from_env_then_file_and_requirements_fail_fast() {
        let mut cfg = SecurityConfig::default();
        let no_env = |_: &str| None;
        let no_file = |_: &str| Err("no such file".to_string());
        assert!(signer_from_sources(&cfg, &no_env, &no_file).unwrap().is_none());
        cfg.require_signed_envelopes = true;
        assert!(signer_from_sources(&cfg, &no_env, &no_file).unwrap_err().contains("require_signed_envelopes"));
        let env = |_: &str| Some("k".repeat(40));
        assert!(signer_from_sources(&cfg, &env, &no_file).unwrap().is_some());
        let short = |_: &str| Some("short".to_string());
        assert!(signer_from_sources(&cfg, &short, &no_file).unwrap_err().contains("at least 32"));
        cfg.envelope_key_file = "/run/secrets/key".into();
        let file = |_: &str| Ok(format!("{}\n", "f".repeat(32)));
        assert!(signer_from_sources(&cfg, &no_env, &file).unwrap().is_some());
        assert!(signer_from_sources(&cfg, &no_env, &no_file).unwrap_err().contains("/run/secrets/key"));
    }
}
