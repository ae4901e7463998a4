//! Route tests on a simulated clock: every decision is a function of the
//! incident, the event and `now`.

use time::Duration;
use time::macros::datetime;

use super::*;
use crate::classify::{BurnSnapshot, classify};
use crate::rules::{EnvPolicy, Sources, load_sources_with_env};

const RULES: &str = r#"
destination "pd" webhook { url "http://127.0.0.1:1/pd" }
destination "backup" webhook { url "http://127.0.0.1:1/backup" }
destination "chat" webhook { url "http://127.0.0.1:1/chat" }
severity SEV1 { page "pd"; notify "chat"; cadence 15m; ack timeout 5m escalate "backup" }
severity SEV2 { page "pd"; cadence 30m }
severity SEV3 { notify "chat"; cadence 4h; postmortem optional }
rule "critical" { when labels.severity == "critical" then SEV1 }
rule "warning" { when labels.severity == "warning" then SEV2 }
otherwise SEV3
group by service wait 30s interval 5m
"#;

const T0: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

fn ruleset(text: &str) -> RuleSet {
    let mut sources = Sources::new();
    sources.add("t.sev", text);
    let loaded = load_sources_with_env(sources, EnvPolicy::Warn, &|_| None);
    let report = loaded.render();
    loaded.ruleset.unwrap_or_else(|| panic!("{report}"))
}

fn alert(rs: &RuleSet, instance: &str, severity: &str, status: AlertStatus) -> ClassifiedAlert {
    let alert = Alert {
        labels: [
            ("alertname", "HighErrorRate"),
            ("service", "checkout"),
            ("instance", instance),
            ("severity", severity),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        status,
        ..Alert::default()
    };
    let c = classify(rs, &alert, &BurnSnapshot::new(), T0);
    ClassifiedAlert::new(alert, &c)
}

fn firing(rs: &RuleSet, instance: &str, severity: &str) -> ClassifiedAlert {
    alert(rs, instance, severity, AlertStatus::Firing)
}

/// `kind:destination` for each action, to compare at a glance.
fn actions(d: &Decision) -> Vec<String> {
    d.actions
        .iter()
        .map(|a| format!("{}:{}", a.kind.as_str(), a.destination))
        .collect()
}

fn kinds(d: &Decision) -> Vec<TimelineKind> {
    d.timeline.iter().map(|t| t.kind).collect()
}

fn at(secs: i64) -> OffsetDateTime {
    T0 + Duration::seconds(secs)
}

fn opened(rs: &RuleSet, severity: &str) -> Incident {
    let (mut inc, _) = declare(7, firing(rs, "a", severity), rs, T0).unwrap();
    apply(&mut inc, Event::Tick, rs, at(30)).unwrap();
    assert_eq!(inc.status, IncidentStatus::Open);
    inc
}

#[test]
fn a_new_incident_gathers_for_the_group_wait_then_pages() {
    let rs = ruleset(RULES);
    let (mut inc, d) = declare(7, firing(&rs, "a", "warning"), &rs, T0).unwrap();
    assert_eq!(inc.status, IncidentStatus::Gathering);
    assert!(d.actions.is_empty(), "nothing is sent while gathering");
    assert_eq!(
        kinds(&d),
        vec![TimelineKind::Declared, TimelineKind::AlertJoined]
    );
    assert_eq!(inc.next_due(), Some(at(30)));
    assert_eq!(inc.key, r#"{service="checkout"}"#);
    assert_eq!(inc.title, "HighErrorRate (service=checkout)");

    // A related alert joins while gathering: still nothing sent.
    let d = apply(
        &mut inc,
        Event::Alert(firing(&rs, "b", "critical")),
        &rs,
        at(10),
    )
    .unwrap();
    assert!(d.actions.is_empty());
    assert!(
        apply(&mut inc, Event::Tick, &rs, at(29))
            .unwrap()
            .actions
            .is_empty()
    );

    // At the end of the wait the most severe classification opens it.
    let d = apply(&mut inc, Event::Tick, &rs, at(30)).unwrap();
    assert_eq!(inc.status, IncidentStatus::Open);
    assert_eq!(inc.severity, Some(Severity::Sev1));
    assert_eq!(actions(&d), vec!["page:pd", "notify:chat"]);
    assert_eq!(d.actions[0].seq, 1);
    assert!(
        d.actions[0].reason.contains("rule \"critical\""),
        "{:?}",
        d.actions[0]
    );
    assert_eq!(inc.timers.ack_due, Some(at(30 + 300)));
    assert_eq!(inc.timers.cadence_due, Some(at(30 + 900)));
    assert!(inc.postmortem_required);
    assert!(kinds(&d).contains(&TimelineKind::PostmortemRequired));
}

#[test]
fn a_zero_wait_pages_on_the_tick_of_the_same_moment_with_every_alert_of_the_batch() {
    let rs = ruleset(&RULES.replace("wait 30s", "wait 0s"));
    let (mut inc, d) = declare(1, firing(&rs, "a", "warning"), &rs, T0).unwrap();
    assert!(d.actions.is_empty());
    assert_eq!(inc.next_due(), Some(T0));
    apply(&mut inc, Event::Alert(firing(&rs, "b", "warning")), &rs, T0).unwrap();
    let d = apply(&mut inc, Event::Tick, &rs, T0).unwrap();
    assert_eq!(inc.status, IncidentStatus::Open);
    assert_eq!(actions(&d), vec!["page:pd"]);
    assert!(
        inc.alerts.values().all(|a| a.announced),
        "both alerts were in the first page"
    );
}

#[test]
fn resolved_or_unclassified_alerts_declare_nothing() {
    let rs = ruleset(RULES);
    assert!(
        declare(
            1,
            alert(&rs, "a", "critical", AlertStatus::Resolved),
            &rs,
            T0
        )
        .is_none()
    );
    let rs = ruleset(&RULES.replace("otherwise SEV3", ""));
    assert!(declare(1, firing(&rs, "a", "info"), &rs, T0).is_none());
}

#[test]
fn re_sent_alerts_never_page_twice() {
    let rs = ruleset(RULES);
    let mut inc = opened(&rs, "warning");
    for minute in 1..=10 {
        let d = apply(
            &mut inc,
            Event::Alert(firing(&rs, "a", "warning")),
            &rs,
            at(30 + 60 * minute),
        )
        .unwrap();
        assert!(d.actions.is_empty(), "minute {minute}: {:?}", d.actions);
    }
}

#[test]
fn an_escalation_pages_at_once_and_records_old_and_new() {
    let rs = ruleset(RULES);
    let mut inc = opened(&rs, "info"); // SEV3 by otherwise
    assert_eq!(inc.severity, Some(Severity::Sev3));
    let d = apply(
        &mut inc,
        Event::Alert(firing(&rs, "b", "critical")),
        &rs,
        at(60),
    )
    .unwrap();
    assert_eq!(inc.severity, Some(Severity::Sev1));
    assert_eq!(actions(&d), vec!["page:pd", "notify:chat"]);
    let entry = d
        .timeline
        .iter()
        .find(|t| t.kind == TimelineKind::Escalated)
        .unwrap();
    assert!(
        entry.text.starts_with("escalated from SEV3 to SEV1"),
        "{}",
        entry.text
    );
    // The joining alert was part of the escalation: no separate announcement.
    assert!(!inc.has_unannounced());
}

#[test]
fn a_joining_alerts_line_names_it_and_reads_as_its_labels_and_an_escalation_says_why() {
    let rs = ruleset(RULES);
    let mut inc = opened(&rs, "info");
    let joining = firing(&rs, "b", "critical");
    let fingerprint = joining.fingerprint.clone();
    let d = apply(&mut inc, Event::Alert(joining), &rs, at(60)).unwrap();
    let joined = d
        .timeline
        .iter()
        .find(|t| t.kind == TimelineKind::AlertJoined)
        .unwrap();
    // Stored naming the alert, not with its text.
    assert_eq!(joined.alert.as_deref(), Some(fingerprint.as_str()));
    assert_eq!(joined.text, "");
    let described = r#"HighErrorRate{instance="b", service="checkout", severity="critical"}"#;
    assert_eq!(joined.text_in(&inc), format!("{described} joined"));
    // The escalation it caused describes it.
    let escalated = d
        .timeline
        .iter()
        .find(|t| t.kind == TimelineKind::Escalated)
        .unwrap();
    assert_eq!(
        escalated.text,
        format!("escalated from SEV3 to SEV1: {described}")
    );
    // Rendered, the lines read as plain text.
    let mut lines = d.timeline.clone();
    TimelineEntry::render_all(&mut lines, &inc);
    assert!(lines.iter().all(|l| l.alert.is_none()));
    assert!(lines.contains(&TimelineEntry {
        at: at(60),
        kind: TimelineKind::AlertJoined,
        actor: None,
        text: format!("{described} joined"),
        alert: None,
    }));
    // Read without its alert (never, for a stored incident), the line
    // still says what joined.
    let mut other = opened(&rs, "info");
    other.id = 8;
    assert_eq!(
        joined.text_in(&other),
        format!("alert {fingerprint} joined")
    );
}

#[test]
fn a_de_escalation_notifies_without_paging() {
    let rs = ruleset(RULES);
    let mut inc = opened(&rs, "critical");
    apply(
        &mut inc,
        Event::Alert(firing(&rs, "b", "warning")),
        &rs,
        at(40),
    )
    .unwrap();
    let d = apply(
        &mut inc,
        Event::Alert(alert(&rs, "a", "critical", AlertStatus::Resolved)),
        &rs,
        at(60),
    )
    .unwrap();
    assert_eq!(inc.severity, Some(Severity::Sev2));
    // SEV2 has no notify destinations: its page target is told, not paged.
    assert_eq!(actions(&d), vec!["notify:pd"]);
    assert!(kinds(&d).contains(&TimelineKind::Deescalated));
}

#[test]
fn joining_alerts_are_announced_at_most_once_per_interval() {
    let rs = ruleset(RULES);
    let mut inc = opened(&rs, "info");
    // Opened at 30s, so the next announcement may go out at 330s.
    let d = apply(
        &mut inc,
        Event::Alert(firing(&rs, "b", "info")),
        &rs,
        at(100),
    )
    .unwrap();
    assert!(d.actions.is_empty());
    let d = apply(
        &mut inc,
        Event::Alert(firing(&rs, "c", "info")),
        &rs,
        at(200),
    )
    .unwrap();
    assert!(d.actions.is_empty());
    assert_eq!(inc.next_due(), Some(at(330)));
    let d = apply(&mut inc, Event::Tick, &rs, at(330)).unwrap();
    assert_eq!(actions(&d), vec!["notify:chat"]);
    assert!(
        d.actions[0].reason.starts_with("2 alert(s) joined"),
        "{}",
        d.actions[0].reason
    );
    // Nothing more to announce.
    assert!(
        apply(&mut inc, Event::Tick, &rs, at(700))
            .unwrap()
            .actions
            .is_empty()
    );
    // After the interval, a joiner is announced as it arrives.
    let d = apply(
        &mut inc,
        Event::Alert(firing(&rs, "d", "info")),
        &rs,
        at(700),
    )
    .unwrap();
    assert_eq!(actions(&d), vec!["notify:chat"]);
}

#[test]
fn resolving_every_alert_resolves_what_was_paged() {
    let rs = ruleset(RULES);
    let mut inc = opened(&rs, "critical");
    let d = apply(
        &mut inc,
        Event::Alert(alert(&rs, "a", "critical", AlertStatus::Resolved)),
        &rs,
        at(90),
    )
    .unwrap();
    assert_eq!(inc.status, IncidentStatus::Resolved);
    assert_eq!(actions(&d), vec!["resolve:pd", "notify:chat"]);
    assert_eq!(inc.next_due(), None, "no timer outlives the incident");
    // Later alerts and ticks change nothing; human actions are refused.
    assert!(
        apply(&mut inc, Event::Tick, &rs, at(5000))
            .unwrap()
            .actions
            .is_empty()
    );
    assert_eq!(
        apply(&mut inc, Event::Ack { by: "ann".into() }, &rs, at(100)),
        Err(RouteError::Resolved(7))
    );
}

#[test]
fn cadence_reminders_fall_due_and_a_status_update_resets_the_clock() {
    let rs = ruleset(RULES);
    let mut inc = opened(&rs, "warning"); // SEV2: cadence 30m
    assert!(
        apply(&mut inc, Event::Tick, &rs, at(30 + 1799))
            .unwrap()
            .actions
            .is_empty()
    );
    let d = apply(&mut inc, Event::Tick, &rs, at(30 + 1800)).unwrap();
    assert_eq!(actions(&d), vec!["update_due:pd"]);
    assert_eq!(inc.timers.cadence_due, Some(at(30 + 3600)));
    let d = apply(
        &mut inc,
        Event::StatusUpdate {
            by: "ann".into(),
            text: "rolled back".into(),
        },
        &rs,
        at(30 + 3000),
    )
    .unwrap();
    assert_eq!(actions(&d), vec!["notify:pd"]);
    assert_eq!(inc.timers.cadence_due, Some(at(30 + 3000 + 1800)));
    assert!(
        apply(&mut inc, Event::Tick, &rs, at(30 + 3600))
            .unwrap()
            .actions
            .is_empty()
    );
}

#[test]
fn an_unacknowledged_page_escalates_once() {
    let rs = ruleset(RULES);
    let mut inc = opened(&rs, "critical"); // ack timeout 5m
    let d = apply(&mut inc, Event::Tick, &rs, at(30 + 300)).unwrap();
    assert_eq!(actions(&d), vec!["escalate:backup"]);
    assert!(kinds(&d).contains(&TimelineKind::AckTimeout));
    assert!(
        apply(&mut inc, Event::Tick, &rs, at(30 + 600))
            .unwrap()
            .actions
            .is_empty()
    );
    // The escalation target was paged, so it gets a resolve at the end.
    let d = apply(
        &mut inc,
        Event::Resolve {
            by: "ann".into(),
            reason: None,
        },
        &rs,
        at(700),
    )
    .unwrap();
    assert_eq!(
        actions(&d),
        vec!["resolve:backup", "resolve:pd", "notify:chat"]
    );
}

#[test]
fn an_acknowledged_page_does_not_escalate() {
    let rs = ruleset(RULES);
    let mut inc = opened(&rs, "critical");
    let d = apply(&mut inc, Event::Ack { by: "ann".into() }, &rs, at(100)).unwrap();
    assert_eq!(d.timeline[0].actor.as_deref(), Some("ann"));
    // What was paged is told, so the vendor stops paging; chat is not.
    assert_eq!(actions(&d), vec!["acknowledge:pd"]);
    assert_eq!(d.actions[0].reason, "acknowledged by ann");
    assert!(
        apply(&mut inc, Event::Tick, &rs, at(30 + 300))
            .unwrap()
            .actions
            .is_empty()
    );
    assert_eq!(
        apply(&mut inc, Event::Ack { by: "bob".into() }, &rs, at(400)),
        Err(RouteError::AlreadyAcked(7))
    );
}

#[test]
fn a_human_override_is_recorded_and_pins_the_severity() {
    let rs = ruleset(RULES);
    let mut inc = opened(&rs, "info");
    let d = apply(
        &mut inc,
        Event::SetSeverity {
            by: "ann".into(),
            severity: Severity::Sev1,
            reason: "customers report failures".into(),
        },
        &rs,
        at(60),
    )
    .unwrap();
    assert_eq!(actions(&d), vec!["page:pd", "notify:chat"]);
    assert_eq!(d.timeline[0].kind, TimelineKind::SeverityOverride);
    assert!(
        d.timeline[0].text.contains("(was SEV3)"),
        "{}",
        d.timeline[0].text
    );
    // A later alert classified lower does not move a pinned severity.
    let d = apply(
        &mut inc,
        Event::Alert(firing(&rs, "b", "warning")),
        &rs,
        at(400),
    )
    .unwrap();
    assert_eq!(inc.severity, Some(Severity::Sev1));
    assert!(!kinds(&d).contains(&TimelineKind::Deescalated));
}

#[test]
fn an_alert_whose_ends_at_passes_unrefreshed_resolves() {
    let rs = ruleset(RULES);
    let mut first = firing(&rs, "a", "warning");
    first.alert.ends_at = Some(at(300));
    let (mut inc, _) = declare(1, first, &rs, T0).unwrap();
    apply(&mut inc, Event::Tick, &rs, at(30)).unwrap();
    assert_eq!(inc.next_due(), Some(at(300)));
    let d = apply(&mut inc, Event::Tick, &rs, at(300)).unwrap();
    assert_eq!(inc.status, IncidentStatus::Resolved);
    assert_eq!(actions(&d), vec!["resolve:pd"]);
}

#[test]
fn a_burn_change_reclassifies_and_escalates_then_de_escalates() {
    let rs = ruleset(
        r#"
slo "api" { objective 99.9%; period 30d }
destination "pd" webhook { url "http://127.0.0.1:1/pd" }
destination "chat" webhook { url "http://127.0.0.1:1/chat" }
severity SEV1 { page "pd"; notify "chat" }
severity SEV3 { notify "chat" }
rule "fast burn" { when labels.service == "checkout" and burn("api", 1h) > 14.4 then SEV1 }
otherwise SEV3
group by service wait 0s
"#,
    );
    let classify_with = |rate: Option<f64>| {
        let mut burn = BurnSnapshot::new();
        if let Some(rate) = rate {
            burn.set_burn("api", 3600, rate);
        }
        let a = firing(&rs, "a", "info").alert;
        let c = classify(&rs, &a, &burn, T0);
        ClassifiedAlert::new(a, &c)
    };
    let (mut inc, _) = declare(1, classify_with(None), &rs, T0).unwrap();
    apply(&mut inc, Event::Tick, &rs, T0).unwrap();
    assert_eq!(inc.severity, Some(Severity::Sev3));
    // The burn rises past 14.4: the same alert now classifies SEV1.
    let d = apply(
        &mut inc,
        Event::Reclassify(vec![classify_with(Some(20.0))]),
        &rs,
        at(30),
    )
    .unwrap();
    assert_eq!(inc.severity, Some(Severity::Sev1));
    assert_eq!(actions(&d), vec!["page:pd", "notify:chat"]);
    let entry = d
        .timeline
        .iter()
        .find(|t| t.kind == TimelineKind::Escalated)
        .unwrap();
    assert!(entry.text.contains("SLO burn changed"), "{}", entry.text);
    // It recovers: de-escalation notifies.
    let d = apply(
        &mut inc,
        Event::Reclassify(vec![classify_with(Some(2.0))]),
        &rs,
        at(60),
    )
    .unwrap();
    assert_eq!(inc.severity, Some(Severity::Sev3));
    assert_eq!(actions(&d), vec!["notify:chat"]);
    // The alert itself was not re-received.
    assert_eq!(inc.alerts.values().next().unwrap().last_seen, T0);
}

#[test]
fn an_incident_survives_a_serde_round_trip_with_its_timers() {
    let rs = ruleset(RULES);
    let inc = opened(&rs, "critical");
    let text = serde_json::to_string(&inc).unwrap();
    let back: Incident = serde_json::from_str(&text).unwrap();
    assert_eq!(back, inc);
    assert_eq!(back.next_due(), inc.next_due());
}

#[test]
fn durations_past_the_calendar_mean_never_not_a_panic() {
    let rs = ruleset(
        &RULES
            .replace("cadence 15m", "cadence 600000w")
            .replace("wait 30s", "wait 0s"),
    );
    let (mut inc, _) = declare(1, firing(&rs, "a", "critical"), &rs, T0).unwrap();
    apply(&mut inc, Event::Tick, &rs, T0).unwrap();
    assert_eq!(inc.status, IncidentStatus::Open);
    assert_eq!(
        inc.timers.cadence_due, None,
        "a reminder that never falls due"
    );
    let far = OffsetDateTime::parse(
        "9999-12-31T23:59:00Z",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let (mut late, _) = declare(2, firing(&rs, "b", "critical"), &rs, far).unwrap();
    apply(&mut late, Event::Tick, &rs, far).unwrap();
    assert_eq!(late.status, IncidentStatus::Open);
}

#[test]
fn an_escalation_after_an_ack_needs_a_new_ack_and_gathering_cannot_be_acked() {
    let rs = ruleset(RULES);
    let (mut gathering, _) = declare(3, firing(&rs, "a", "warning"), &rs, T0).unwrap();
    assert_eq!(
        apply(&mut gathering, Event::Ack { by: "ann".into() }, &rs, T0),
        Err(RouteError::NotPaged(3))
    );
    let mut inc = opened(&rs, "warning"); // SEV2: no ack timeout
    apply(&mut inc, Event::Ack { by: "ann".into() }, &rs, at(40)).unwrap();
    // Escalation to SEV1 pages again: its ack timeout runs anew.
    apply(
        &mut inc,
        Event::Alert(firing(&rs, "b", "critical")),
        &rs,
        at(60),
    )
    .unwrap();
    assert_eq!(inc.acked_at, None);
    assert_eq!(inc.timers.ack_due, Some(at(60 + 300)));
    assert!(apply(&mut inc, Event::Ack { by: "ann".into() }, &rs, at(70)).is_ok());
}

#[test]
fn consuming_more_than_a_fifth_of_an_slo_budget_requires_a_postmortem_once() {
    let rs = ruleset(RULES);
    // SEV3 says "postmortem optional": only the budget can require one.
    let mut inc = opened(&rs, "info");
    assert!(!inc.postmortem_required);
    let month = 30 * 86_400;
    let budgets = |left: f64| Event::Budgets(vec![("api".to_string(), left, month)]);

    // The first reading marks where the incident found the budget.
    let d = apply(&mut inc, budgets(0.9), &rs, at(60)).unwrap();
    assert!(d.timeline.is_empty());
    assert_eq!(inc.slo_budgets["api"].remaining_at_start, 0.9);
    // 15 points consumed: under the threshold.
    let d = apply(&mut inc, budgets(0.75), &rs, at(90)).unwrap();
    assert!(d.timeline.is_empty());
    assert!(!inc.postmortem_required);
    // 25 points: over it. Flagged, and the timeline says why.
    let d = apply(&mut inc, budgets(0.65), &rs, at(120)).unwrap();
    assert_eq!(kinds(&d), vec![TimelineKind::PostmortemRequired]);
    assert_eq!(
        d.timeline[0].text,
        "consumed 25% of SLO api's 30d error budget since the incident began \
         (more than 20%): a postmortem is required by the error-budget policy"
    );
    assert!(inc.postmortem_required);
    assert!(d.actions.is_empty(), "a postmortem flag pages no one");
    // Said once, however much more burns.
    let d = apply(&mut inc, budgets(0.1), &rs, at(150)).unwrap();
    assert!(d.timeline.is_empty());
    // A second SLO gets its own mark, starting from its own reading.
    let d = apply(
        &mut inc,
        Event::Budgets(vec![("db".to_string(), -0.5, month)]),
        &rs,
        at(180),
    )
    .unwrap();
    assert!(d.timeline.is_empty());
    assert_eq!(inc.slo_budgets["db"].remaining_at_start, -0.5);
}

#[test]
fn an_ack_after_an_escalation_tells_every_destination_that_was_paged() {
    let rs = ruleset(RULES);
    let mut inc = opened(&rs, "critical");
    // The ack timeout passes: "backup" is paged as well.
    apply(&mut inc, Event::Tick, &rs, at(30 + 300)).unwrap();
    let d = apply(&mut inc, Event::Ack { by: "bob".into() }, &rs, at(400)).unwrap();
    assert_eq!(actions(&d), vec!["acknowledge:backup", "acknowledge:pd"]);
    assert!(d.actions.iter().all(|a| a.reason == "acknowledged by bob"));
    // A resolved incident cannot be acknowledged, and sends nothing more.
    apply(
        &mut inc,
        Event::Resolve {
            by: "bob".into(),
            reason: None,
        },
        &rs,
        at(500),
    )
    .unwrap();
    assert!(apply(&mut inc, Event::Ack { by: "bob".into() }, &rs, at(600)).is_err());
}

/// A small deterministic PRNG (xorshift64*), so random sequences repeat.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// The derived values recomputed the slow way, over every alert.
fn derived_by_walking(inc: &Incident) -> (Option<OffsetDateTime>, bool, Option<Severity>) {
    let firing = || inc.alerts.values().filter(|a| a.is_firing());
    let expiry = firing().filter_map(|a| a.alert.ends_at).min();
    let unannounced = firing().any(|a| !a.announced);
    let t = &inc.timers;
    let next_due = [
        t.group_wait_until,
        t.announce_after.filter(|_| unannounced),
        t.cadence_due,
        t.ack_due,
        expiry,
    ]
    .into_iter()
    .flatten()
    .min();
    let severity = inc
        .pinned
        .or_else(|| firing().filter_map(|a| a.severity).min());
    (next_due, unannounced, severity)
}

/// A random event: mostly alerts (new, refreshed with a new `ends_at`,
/// reclassified, resolved), sometimes ticks and people.
fn random_event(rng: &mut Rng, rs: &RuleSet, now: OffsetDateTime) -> Event {
    let alert_event = |rng: &mut Rng| {
        let instance = ["a", "b", "c", "d", "e", "f"][rng.below(6) as usize];
        let severity = ["critical", "warning", "info"][rng.below(3) as usize];
        let status = if rng.below(4) == 0 {
            AlertStatus::Resolved
        } else {
            AlertStatus::Firing
        };
        let mut a = alert(rs, instance, severity, status);
        // Some send no endsAt; others one that may already have passed.
        if rng.below(5) != 0 {
            a.alert.ends_at = Some(now + Duration::seconds(rng.below(600) as i64 - 60));
        }
        a
    };
    match rng.below(20) {
        0..=11 => Event::Alert(alert_event(rng)),
        12..=15 => Event::Tick,
        16 => Event::Reclassify(vec![alert_event(rng)]),
        17 => Event::Ack { by: "bob".into() },
        18 => Event::SetSeverity {
            by: "bob".into(),
            severity: Severity::ALL[rng.below(3) as usize],
            reason: "test".into(),
        },
        _ => Event::StatusUpdate {
            by: "bob".into(),
            text: "still on it".into(),
        },
    }
}

#[test]
fn the_counts_and_the_changes_recorded_per_event_match_a_walk_over_every_alert() {
    let rs = ruleset(RULES);
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut now = T0;
        let (mut inc, _) = declare(1, firing(&rs, "a", "warning"), &rs, now).unwrap();
        for step in 0..60 {
            now += Duration::seconds(rng.below(120) as i64);
            let event = random_event(&mut rng, &rs, now);
            let described = format!("seed {seed} step {step}: {event:?}");
            let header_before = inc.header();
            let alerts_before: BTreeMap<String, TrackedAlert> = inc
                .alerts
                .iter()
                .map(|(k, a)| (k.clone(), a.clone()))
                .collect();
            let is_alert = matches!(event, Event::Alert(_));
            let decision = apply(&mut inc, event, &rs, now);
            // What the pipeline writes is all that changed: the header
            // only when the decision says so (for an alert) ...
            if is_alert
                && let Ok(d) = &decision
                && !d.reaches_beyond_its_alerts()
            {
                assert_eq!(inc.header(), header_before, "{described}");
            }
            // ... and only the alerts recorded as changed, a refresh
            // differing in nothing but its last_seen and ends_at.
            // Owned: a change borrows the set it came from.
            let changes: BTreeMap<
                String,
                Result<(OffsetDateTime, Option<OffsetDateTime>), TrackedAlert>,
            > = inc
                .alerts
                .take_changes()
                .map(|(fingerprint, changed)| {
                    let changed = match changed {
                        Changed::Seen { last_seen, ends_at } => Ok((last_seen, ends_at)),
                        Changed::Whole(alert) => Err((**alert).clone()),
                    };
                    (fingerprint, changed)
                })
                .collect();
            for (fingerprint, after) in inc.alerts.iter() {
                let before = alerts_before.get(fingerprint);
                match changes.get(fingerprint) {
                    None => assert_eq!(before, Some(after), "{described}"),
                    Some(Ok((last_seen, ends_at))) => {
                        let mut expected = before.unwrap().clone();
                        // The values recorded with the change are the
                        // alert's now.
                        expected.last_seen = *last_seen;
                        expected.alert.ends_at = *ends_at;
                        assert_eq!(&expected, after, "{described}");
                        assert_eq!(
                            ends_at.map(|t| t.offset()),
                            after.alert.ends_at.map(|t| t.offset())
                        );
                    }
                    Some(Err(now)) => assert_eq!(now, after, "{described}"),
                }
            }
            assert!(inc.alerts.counts_are_exact(), "{described}");
            let (next_due, unannounced, severity) = derived_by_walking(&inc);
            assert_eq!(inc.next_due(), next_due, "{described}");
            assert_eq!(inc.has_unannounced(), unannounced, "{described}");
            assert_eq!(inc.effective_severity(), severity, "{described}");
            // What a restart loads (the store reads incidents with serde)
            // derives the same values.
            let loaded: Incident = serde_json::from_str(&serde_json::to_string(&inc).unwrap())
                .unwrap_or_else(|e| panic!("{described}: {e}"));
            assert_eq!(loaded, inc, "{described}");
            assert!(loaded.alerts.counts_are_exact(), "{described}");
            assert_eq!(loaded.next_due(), next_due, "{described}");
            if !inc.is_active() {
                break;
            }
        }
    }
}

#[test]
fn an_alert_changed_in_place_is_counted_again_at_the_next_change() {
    let rs = ruleset(RULES);
    let (mut inc, _) = declare(1, firing(&rs, "a", "warning"), &rs, T0).unwrap();
    let fingerprint = inc.alerts.keys().next().unwrap().clone();
    assert_eq!(inc.effective_severity(), Some(Severity::Sev2));
    // As a map would: the alert itself, changed without the set seeing how.
    inc.alerts.get_mut(&fingerprint).unwrap().severity = Some(Severity::Sev1);
    inc.alerts.get_mut(&fingerprint).unwrap().alert.ends_at = Some(at(90));
    assert_eq!(inc.effective_severity(), Some(Severity::Sev1));
    assert_eq!(inc.next_due(), Some(at(30)), "the group wait is earlier");
    inc.timers.group_wait_until = None;
    assert_eq!(inc.next_due(), Some(at(90)), "then the alert's expiry");
    apply(
        &mut inc,
        Event::Alert(firing(&rs, "b", "info")),
        &rs,
        at(10),
    )
    .unwrap();
    assert!(inc.alerts.counts_are_exact());
    assert_eq!(inc.effective_severity(), Some(Severity::Sev1));
}

/// The group key and description as they were written before the fast
/// paths (through a map and `{:?}`): the reference the fast ones must
/// equal, byte for byte.
mod formatting {
    use proptest::prelude::*;

    use super::*;
    use crate::model::{Source, StrMap};

    fn reference_key(grouping: &Grouping, alert: &Alert) -> String {
        let labels: BTreeMap<String, String> = match alert.slo_rule_alert_of() {
            Some(slo) => [("slo".to_string(), slo.to_string())].into_iter().collect(),
            None => grouping
                .by
                .iter()
                .map(|name| (name.clone(), alert.label(name).to_string()))
                .collect(),
        };
        let key = labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(",");
        format!("{{{key}}}")
    }

    fn reference_description(alert: &Alert) -> String {
        let rest: Vec<String> = alert
            .labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{}{{{}}}", alert.label("alertname"), rest.join(", "))
    }

    /// Label text: mostly plain, sometimes quotes, backslashes, control
    /// characters and non-ASCII (which `{:?}` escapes or keeps).
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9._:-]{0,12}",
            "[a-z\"\\\\ '\t\n\u{7f}\u{0}é\u{301}\u{200b}]{0,8}",
            ".{0,10}",
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "alertname",
            "service",
            "instance",
            "job",
            "slo",
            "[a-z_]{1,6}"
        ]
    }

    proptest! {
        #[test]
        fn fast_group_keys_and_descriptions_equal_the_formatted_ones(
            labels in proptest::collection::vec((name(), value()), 0..8),
            by in proptest::collection::vec(name(), 0..5),
            slo_alert in any::<bool>(),
        ) {
            let alert = Alert {
                labels: labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<StrMap>(),
                source: if slo_alert { Source::Slo } else { Source::Prometheus },
                ..Default::default()
            };
            let grouping = Grouping { by, wait_secs: 0, interval_secs: 0 };
            prop_assert_eq!(group_key_text(&grouping, &alert), reference_key(&grouping, &alert));
            prop_assert_eq!(group_key(&grouping, &alert).0, reference_key(&grouping, &alert));
            prop_assert_eq!(describe_labels(&alert), reference_description(&alert));
        }
    }
}
