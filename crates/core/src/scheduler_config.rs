//! The `[scheduler]` config section.

use crate::config::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How often the leader looks for due jobs.
    pub tick_ms: u64,
    /// How long the leader lease lasts without renewal; a dead leader is replaced after this.
    pub lease_ttl_ms: u64,
    /// After downtime, a job whose latest slot passed less than this long ago
    /// fires once; an older one is recorded as missed and waits for its next slot.
    pub grace_ms: u64,
    /// The shortest interval between two fires of one job, for every tenant…
    pub min_interval_secs: u64,
    /// …unless the tenant has its own minimum here (`acme = 300`).
    pub tenant_min_interval_secs: BTreeMap<String, u64>,
    /// A job that fails this many times in a row is paused and its owner told.
    pub max_consecutive_failures: u32,
    /// Jobs one user may own.
    pub max_jobs_per_user: usize,
    /// The deadline of one fired turn.
    pub run_timeout_ms: u64,
    /// The time zone of cron jobs created without one.
    pub default_timezone: String,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick_ms: 1_000,
            lease_ttl_ms: 10_000,
            grace_ms: 15 * 60_000,
            min_interval_secs: 300,
            tenant_min_interval_secs: BTreeMap::new(),
            max_consecutive_failures: 3,
            max_jobs_per_user: 50,
            run_timeout_ms: 300_000,
            default_timezone: "UTC".into(),
        }
    }
}

impl SchedulerConfig {
    /// The minimum interval for `tenant`.
    pub fn min_interval_for(&self, tenant: &str) -> u64 {
        self.tenant_min_interval_secs.get(tenant).copied().unwrap_or(self.min_interval_secs)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.tick_ms < 10 {
            return bad("scheduler.tick_ms must be at least 10");
        }
        if self.lease_ttl_ms < 2 * self.tick_ms {
            return bad("scheduler.lease_ttl_ms must be at least twice scheduler.tick_ms");
        }
        if self.max_consecutive_failures == 0 {
            return bad("scheduler.max_consecutive_failures must be at least 1");
        }
        if self.run_timeout_ms < 1_000 {
            return bad("scheduler.run_timeout_ms must be at least 1000");
        }
        if crate::schedule::parse_tz(&self.default_timezone).is_err() {
            return Err(ConfigError::Invalid(format!(
                "scheduler.default_timezone {:?} is not an IANA time zone",
                self.default_timezone
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn scheduler_section_from_file_and_env() {
        let file = "[scheduler]\nmin_interval_secs = 60\n[scheduler.tenant_min_interval_secs]\nacme = 5\n";
        let env = vec![("CLAWHIVE_SCHEDULER__GRACE_MS".to_string(), "1234".to_string())];
        let cfg = Config::from_sources(Some(file), env).unwrap();
        assert_eq!(cfg.scheduler.grace_ms, 1234);
        assert_eq!(cfg.scheduler.min_interval_for("acme"), 5);
        assert_eq!(cfg.scheduler.min_interval_for("globex"), 60);
        let e = Config::from_sources(Some("[scheduler]\ndefault_timezone = \"Mars/Base\"\n"), Vec::new()).unwrap_err();
        assert!(e.to_string().contains("scheduler.default_timezone"), "{e}");
        let e =
            Config::from_sources(Some("[scheduler]\ntick_ms = 1000\nlease_ttl_ms = 1000\n"), Vec::new()).unwrap_err();
        assert!(e.to_string().contains("lease_ttl_ms"), "{e}");
    }
}
