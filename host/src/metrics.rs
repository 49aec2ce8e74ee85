//! A small process-wide metrics registry, rendered as Prometheus text by `GET /metrics`.
//!
//! Hand-written rather than the `prometheus-client` crate: a handful of counters
//! and one histogram keyed by (category, state) or (plugin, function, outcome)
//! need a few dozen lines, no extra dependency, and label values here are
//! plugin/category names only (never params, never secrets).
//!
//! Anyone may call the recording functions: the plugin host calls
//! [`plugin_call_timed`], the queue records [`task_finished`] with a run time
//! from a monotonic clock, the API records [`task_submitted`].
//! The store-derived gauges (`stevedore_tasks{category,state}`, the queue
//! depth and the oldest waiting task's age) are computed at scrape time from
//! one grouped count in the store, and passed to [`render`] as a [`Stored`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use parking_lot::Mutex;

/// Upper bounds (seconds) of the task run-time histogram buckets.
pub const RUN_TIME_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0, 1800.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; RUN_TIME_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (i, le) in RUN_TIME_BUCKETS.iter().enumerate() {
            if v <= *le {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }
}

/// Values by a label (category, plugin, function), in label order.
type ByLabel<V> = BTreeMap<String, V>;

#[derive(Default)]
struct Registry {
    submitted: ByLabel<u64>,
    /// By category, then final state.
    finished: ByLabel<ByLabel<u64>>,
    run_time: ByLabel<Histogram>,
    /// By plugin, then function, then outcome.
    plugin_calls: ByLabel<ByLabel<BTreeMap<&'static str, u64>>>,
    /// By plugin, then function.
    plugin_call_seconds: ByLabel<ByLabel<f64>>,
    http_responses: BTreeMap<u16, u64>,
    login_failures: u64,
    password_checks: u64,
}

/// The value of `label` in `map`, created at its default the first time.
/// A label is copied only then: recording a task allocates nothing.
fn slot<'m, V: Default>(map: &'m mut ByLabel<V>, label: &str) -> &'m mut V {
    if !map.contains_key(label) {
        map.insert(label.to_owned(), V::default());
    }
    map.get_mut(label).expect("inserted above")
}

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut r = registry().lock();
    f(&mut r)
}

/// A task was accepted by `POST background/{category}`.
pub fn task_submitted(category: &str) {
    with(|r| *slot(&mut r.submitted, category) += 1);
}

/// A task ended in `state` (`completed` or `error`) after running `seconds`.
pub fn task_finished(category: &str, state: &str, seconds: f64) {
    with(|r| {
        *slot(slot(&mut r.finished, category), state) += 1;
        slot(&mut r.run_time, category).observe(seconds.max(0.0));
    });
}

/// The plugin host called `function` (`describe`, `validate`, `run`) of `plugin`.
pub fn plugin_call(plugin: &str, function: &str, ok: bool) {
    with(|r| count_call(r, plugin, function, ok));
}

fn count_call(r: &mut Registry, plugin: &str, function: &str, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    *slot(slot(&mut r.plugin_calls, plugin), function)
        .entry(outcome)
        .or_default() += 1;
}

/// Like [`plugin_call`], with the call's wall time.
pub fn plugin_call_timed(plugin: &str, function: &str, ok: bool, seconds: f64) {
    with(|r| {
        count_call(r, plugin, function, ok);
        *slot(slot(&mut r.plugin_call_seconds, plugin), function) += seconds.max(0.0);
    });
}

/// The API answered with `status`.
pub fn http_response(status: u16) {
    with(|r| *r.http_responses.entry(status).or_default() += 1);
}

/// A login was refused.
pub fn login_failed() {
    with(|r| r.login_failures += 1);
}

/// A password was checked (argon2 ran), whatever the outcome.
pub fn password_checked() {
    with(|r| r.password_checks += 1);
}

/// The entries of a map of maps by both labels, in label order.
fn flatten<V>(map: &ByLabel<ByLabel<V>>) -> impl Iterator<Item = ((&str, &str), &V)> {
    map.iter().flat_map(|(a, inner)| {
        inner
            .iter()
            .map(move |(b, v)| ((a.as_str(), b.as_str()), v))
    })
}

/// Escape a label value per the Prometheus text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What the store holds at scrape time.
#[derive(Debug, Default)]
pub struct Stored {
    /// Tasks per (category, state).
    pub tasks: BTreeMap<(String, String), u64>,
    /// Per category, seconds since the oldest waiting task was submitted.
    pub oldest_waiting_age: BTreeMap<String, f64>,
}

/// Render everything in the Prometheus text format (version 0.0.4).
pub fn render(stored: &Stored) -> String {
    let tasks = &stored.tasks;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# HELP stevedore_tasks Stored tasks by category and state."
    );
    let _ = writeln!(o, "# TYPE stevedore_tasks gauge");
    for ((c, s), n) in tasks {
        let _ = writeln!(
            o,
            "stevedore_tasks{{category=\"{}\",state=\"{}\"}} {n}",
            esc(c),
            esc(s)
        );
    }
    let _ = writeln!(
        o,
        "# HELP stevedore_queue_depth Tasks waiting for a worker, by category."
    );
    let _ = writeln!(o, "# TYPE stevedore_queue_depth gauge");
    for ((c, s), n) in tasks {
        if s == "waiting" {
            let _ = writeln!(o, "stevedore_queue_depth{{category=\"{}\"}} {n}", esc(c));
        }
    }
    let _ = writeln!(
        o,
        "# HELP stevedore_queue_oldest_waiting_seconds Age of the task waiting longest, by category (absent: none waits)."
    );
    let _ = writeln!(o, "# TYPE stevedore_queue_oldest_waiting_seconds gauge");
    for (c, age) in &stored.oldest_waiting_age {
        let _ = writeln!(
            o,
            "stevedore_queue_oldest_waiting_seconds{{category=\"{}\"}} {age}",
            esc(c)
        );
    }
    with(|r| {
        let _ = writeln!(
            o,
            "# HELP stevedore_tasks_submitted_total Tasks accepted, by category."
        );
        let _ = writeln!(o, "# TYPE stevedore_tasks_submitted_total counter");
        for (c, n) in &r.submitted {
            let _ = writeln!(
                o,
                "stevedore_tasks_submitted_total{{category=\"{}\"}} {n}",
                esc(c)
            );
        }
        let _ = writeln!(
            o,
            "# HELP stevedore_tasks_finished_total Tasks ended, by category and final state."
        );
        let _ = writeln!(o, "# TYPE stevedore_tasks_finished_total counter");
        for ((c, s), n) in flatten(&r.finished) {
            let _ = writeln!(
                o,
                "stevedore_tasks_finished_total{{category=\"{}\",state=\"{}\"}} {n}",
                esc(c),
                esc(s)
            );
        }
        let _ = writeln!(
            o,
            "# HELP stevedore_task_run_seconds Task run time (start to end), by category."
        );
        let _ = writeln!(o, "# TYPE stevedore_task_run_seconds histogram");
        for (c, h) in &r.run_time {
            let c = esc(c);
            for (i, le) in RUN_TIME_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "stevedore_task_run_seconds_bucket{{category=\"{c}\",le=\"{le}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(
                o,
                "stevedore_task_run_seconds_bucket{{category=\"{c}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                o,
                "stevedore_task_run_seconds_sum{{category=\"{c}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                o,
                "stevedore_task_run_seconds_count{{category=\"{c}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(o, "# HELP stevedore_plugin_calls_total Calls into plugins, by plugin, function and outcome.");
        let _ = writeln!(o, "# TYPE stevedore_plugin_calls_total counter");
        for ((p, f), by_outcome) in flatten(&r.plugin_calls) {
            for (ok, n) in by_outcome {
                let _ = writeln!(
                o,
                "stevedore_plugin_calls_total{{plugin=\"{}\",function=\"{}\",outcome=\"{ok}\"}} {n}",
                esc(p),
                esc(f)
            );
            }
        }
        let _ = writeln!(
            o,
            "# HELP stevedore_plugin_call_seconds_total Wall time spent in plugin calls."
        );
        let _ = writeln!(o, "# TYPE stevedore_plugin_call_seconds_total counter");
        for ((p, f), s) in flatten(&r.plugin_call_seconds) {
            let _ = writeln!(
                o,
                "stevedore_plugin_call_seconds_total{{plugin=\"{}\",function=\"{}\"}} {s}",
                esc(p),
                esc(f)
            );
        }
        let _ = writeln!(
            o,
            "# HELP stevedore_http_responses_total API responses by status code."
        );
        let _ = writeln!(o, "# TYPE stevedore_http_responses_total counter");
        for (s, n) in &r.http_responses {
            let _ = writeln!(o, "stevedore_http_responses_total{{code=\"{s}\"}} {n}");
        }
        let _ = writeln!(o, "# HELP stevedore_login_failures_total Refused logins.");
        let _ = writeln!(o, "# TYPE stevedore_login_failures_total counter");
        let _ = writeln!(o, "stevedore_login_failures_total {}", r.login_failures);
        let _ = writeln!(
            o,
            "# HELP stevedore_password_checks_total Passwords checked (argon2 runs)."
        );
        let _ = writeln!(o, "# TYPE stevedore_password_checks_total counter");
        let _ = writeln!(o, "stevedore_password_checks_total {}", r.password_checks);
    });
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_recorded_values() {
        task_submitted("m_test");
        task_finished("m_test", "completed", 0.02);
        task_finished("m_test", "error", 2.0);
        plugin_call("m_test", "run", true);
        plugin_call_timed("m_test", "validate", false, 0.5);
        let mut stored = Stored::default();
        stored
            .tasks
            .insert(("m_test".to_string(), "waiting".to_string()), 3);
        stored
            .tasks
            .insert(("m_test".to_string(), "running".to_string()), 1);
        stored.oldest_waiting_age.insert("m_test".to_string(), 42.0);
        let text = render(&stored);
        assert!(text.contains("stevedore_tasks{category=\"m_test\",state=\"waiting\"} 3"));
        assert!(text.contains("stevedore_queue_depth{category=\"m_test\"} 3\n"));
        assert!(!text.contains("stevedore_queue_depth{category=\"m_test\"} 1"));
        assert!(text.contains("stevedore_queue_oldest_waiting_seconds{category=\"m_test\"} 42"));
        assert!(text.contains("stevedore_tasks_submitted_total{category=\"m_test\"} 1"));
        assert!(text
            .contains("stevedore_tasks_finished_total{category=\"m_test\",state=\"completed\"} 1"));
        assert!(
            text.contains("stevedore_task_run_seconds_bucket{category=\"m_test\",le=\"0.05\"} 1")
        );
        assert!(text.contains("stevedore_task_run_seconds_bucket{category=\"m_test\",le=\"5\"} 2"));
        assert!(text.contains("stevedore_task_run_seconds_count{category=\"m_test\"} 2"));
        assert!(text.contains(
            "stevedore_plugin_calls_total{plugin=\"m_test\",function=\"validate\",outcome=\"error\"} 1"
        ));
        assert!(text.contains(
            "stevedore_plugin_call_seconds_total{plugin=\"m_test\",function=\"validate\"} 0.5"
        ));
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(esc("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
