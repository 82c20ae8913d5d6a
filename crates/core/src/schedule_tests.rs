use super::*;

fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

fn cron(expr: &str, tz: &str) -> Compiled {
    Schedule::Cron { expr: expr.into(), timezone: tz.into() }.compile(0, 60).unwrap()
}

fn slots(c: &Compiled, from: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut t = ms(from);
    for _ in 0..n {
        t = c.next_after(t).unwrap();
        out.push(rfc3339(t));
    }
    out
}

#[test]
fn weekday_cron_in_new_york_follows_the_spring_dst_change() {
    // 07:00 local is 12:00Z in EST and 11:00Z in EDT (from Sunday 2026-03-08).
    let c = cron("0 7 * * 1-5", "America/New_York");
    assert_eq!(
        slots(&c, "2026-03-05T13:00:00Z", 4),
        [
            "2026-03-06T12:00:00+00:00",
            "2026-03-09T11:00:00+00:00",
            "2026-03-10T11:00:00+00:00",
            "2026-03-11T11:00:00+00:00"
        ]
    );
}

#[test]
fn a_time_in_the_spring_gap_fires_once_at_the_end_of_the_gap() {
    // 02:30 does not exist on 2026-03-08 in New York: it fires at 03:00 EDT (07:00Z), once.
    let c = cron("30 2 * * *", "America/New_York");
    assert_eq!(
        slots(&c, "2026-03-07T00:00:00Z", 3),
        ["2026-03-07T07:30:00+00:00", "2026-03-08T07:00:00+00:00", "2026-03-09T06:30:00+00:00"]
    );
}

#[test]
fn a_time_in_the_autumn_overlap_fires_once() {
    // 01:30 happens twice on 2026-11-01 in New York (EDT, then EST): one fire, at the first.
    let c = cron("30 1 * * *", "America/New_York");
    assert_eq!(
        slots(&c, "2026-10-31T00:00:00Z", 3),
        ["2026-10-31T05:30:00+00:00", "2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]
    );
    // Berlin: 09:00 local is 07:00Z in CEST and 08:00Z in CET (from 2026-10-25).
    let c = cron("0 9 * * *", "Europe/Berlin");
    assert_eq!(slots(&c, "2026-10-23T12:00:00Z", 2), ["2026-10-24T07:00:00+00:00", "2026-10-25T08:00:00+00:00"]);
}

#[test]
fn bad_cron_and_time_zones_get_clear_errors() {
    let e = Schedule::Cron { expr: "61 * * * *".into(), timezone: "UTC".into() }.compile(0, 0).unwrap_err();
    assert!(e.to_string().contains("invalid cron expression \"61 * * * *\""), "{e}");
    let e = Schedule::Cron { expr: "0 7 * *".into(), timezone: "UTC".into() }.compile(0, 0).unwrap_err();
    assert!(e.to_string().contains("it has 4 fields"), "{e}");
    let e = Schedule::Cron { expr: "0 0 7 * * *".into(), timezone: "UTC".into() }.compile(0, 0).unwrap_err();
    assert!(e.to_string().contains("it has 6 fields"), "{e}");
    let e = Schedule::Cron { expr: "0 7 * * *".into(), timezone: "Mars/Olympus".into() }.compile(0, 0).unwrap_err();
    assert_eq!(e, ScheduleError::BadTimeZone("Mars/Olympus".into()));
    assert!(e.to_string().contains("IANA"));
    assert!(Schedule::Cron { expr: "@daily".into(), timezone: "UTC".into() }.compile(0, 0).is_ok());
}

#[test]
fn the_tenant_minimum_interval_is_enforced() {
    let now = ms("2026-01-01T00:00:00Z");
    let e = Schedule::Every { interval_secs: 30 }.validate_new(now, 60).unwrap_err();
    assert_eq!(e, ScheduleError::TooFrequent { given_secs: 30, min_secs: 60 });
    assert!(Schedule::Every { interval_secs: 60 }.validate_new(now, 60).is_ok());
    let e = Schedule::Cron { expr: "* * * * *".into(), timezone: "UTC".into() }.validate_new(now, 300).unwrap_err();
    assert!(matches!(e, ScheduleError::CronTooFrequent { gap_secs: 60, min_secs: 300, .. }), "{e}");
    // A cron with an uneven spacing is judged by its shortest gap.
    let e = Schedule::Cron { expr: "0,1 * * * *".into(), timezone: "UTC".into() }.validate_new(now, 300).unwrap_err();
    assert!(matches!(e, ScheduleError::CronTooFrequent { gap_secs: 60, .. }), "{e}");
    assert!(Schedule::Cron { expr: "*/5 * * * *".into(), timezone: "UTC".into() }.validate_new(now, 300).is_ok());
    let e = Schedule::At { at_unix_ms: now - 1 }.validate_new(now, 300).unwrap_err();
    assert_eq!(e, ScheduleError::InPast(now - 1));
    let e = Schedule::Cron { expr: "0 0 30 2 *".into(), timezone: "UTC".into() }.validate_new(now, 0).unwrap_err();
    assert!(e.to_string().contains("never fires") || e.to_string().contains("invalid cron"), "{e}");
}

#[test]
fn intervals_count_from_the_anchor() {
    let c = Schedule::Every { interval_secs: 10 }.compile(1_000, 1).unwrap();
    assert_eq!(c.next_after(0), Some(11_000));
    assert_eq!(c.next_after(11_000), Some(21_000));
    assert_eq!(c.next_after(11_001), Some(21_000));
    let at = Schedule::At { at_unix_ms: 5_000 }.compile(0, 0).unwrap();
    assert_eq!(at.next_after(4_999), Some(5_000));
    assert_eq!(at.next_after(5_000), None);
}

#[test]
fn after_downtime_one_catch_up_fire_for_the_latest_slot_within_grace() {
    let c = Schedule::Every { interval_secs: 10 }.compile(0, 1).unwrap();
    // Slots 10 s, 20 s, 30 s passed while down; now is 35 s.
    assert_eq!(decide(&c, 10_000, 35_000, 60_000), Due::Fire { slot: 30_000, skipped: 2, next: Some(40_000) });
    // Beyond the grace window: recorded as missed, the job waits for 40 s.
    assert_eq!(decide(&c, 10_000, 35_000, 2_000), Due::Missed { slot: 30_000, next: Some(40_000) });
    // On time: fires its own slot.
    assert_eq!(decide(&c, 10_000, 10_050, 1_000), Due::Fire { slot: 10_000, skipped: 0, next: Some(20_000) });
    // Cron catch-up picks the latest passed occurrence.
    let daily = cron("0 7 * * *", "Europe/Paris");
    let first = ms("2026-06-01T05:00:00Z");
    let now = ms("2026-06-03T05:10:00Z");
    assert_eq!(
        decide(&daily, first, now, 3_600_000),
        Due::Fire { slot: ms("2026-06-03T05:00:00Z"), skipped: 2, next: Some(ms("2026-06-04T05:00:00Z")) }
    );
    // A one-off job that passed long ago is missed and done.
    let at = Schedule::At { at_unix_ms: 1_000 }.compile(0, 0).unwrap();
    assert_eq!(decide(&at, 1_000, 100_000, 5_000), Due::Missed { slot: 1_000, next: None });
    assert_eq!(decide(&at, 1_000, 2_000, 5_000), Due::Fire { slot: 1_000, skipped: 0, next: None });
}

#[test]
fn fire_request_ids_round_trip_and_are_valid_request_ids() {
    let t = TenantId::new("acme").unwrap();
    let j = JobId::random();
    let id = fire_request_id(&t, &j, 1_767_225_600_000);
    assert!(crate::RequestId::new(id.as_str()).is_ok());
    assert_eq!(parse_fire_request_id(&id), Some((t, j, 1_767_225_600_000)));
    assert_eq!(parse_fire_request_id("r-123"), None);
    assert!(JobId::new("Bad Id").is_err());
}

#[test]
fn deliveries_are_checked() {
    assert!(Delivery::Session.validate().is_ok());
    let dm = Delivery::SlackDm { team_id: "T1".into(), user_id: "U2".into() };
    assert!(dm.validate().is_ok());
    assert_eq!(dm.slack_identity().as_deref(), Some("T1:U2"));
    assert!(Delivery::SlackDm { team_id: "T1".into(), user_id: "U 2".into() }.validate().is_err());
    let json = r#"{"kind":"slack_channel","team_id":"T1","channel_id":"C9","user_id":"U2"}"#;
    let d: Delivery = serde_json::from_str(json).unwrap();
    assert!(matches!(d, Delivery::SlackChannel { .. }));
}
