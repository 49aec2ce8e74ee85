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
    audit_dropped: u64,
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

/// An audit record was dropped: the log's writer was behind.
pub fn audit_dropped() {
    with(|r| r.audit_dropped += 1);
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

/// The metric families [`render`] writes, in its order: name, type, help.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "stevedore_tasks",
        "gauge",
        "Stored tasks by category and state.",
    ),
    (
        "stevedore_queue_depth",
        "gauge",
        "Tasks waiting for a worker, by category.",
    ),
    (
        "stevedore_queue_oldest_waiting_seconds",
        "gauge",
        "Age of the task waiting longest, by category (absent: none waits).",
    ),
    (
        "stevedore_tasks_submitted_total",
        "counter",
        "Tasks accepted, by category.",
    ),
    (
        "stevedore_tasks_finished_total",
        "counter",
        "Tasks ended, by category and final state.",
    ),
    (
        "stevedore_task_run_seconds",
        "histogram",
        "Task run time (start to end), by category.",
    ),
    (
        "stevedore_plugin_calls_total",
        "counter",
        "Calls into plugins, by plugin, function and outcome.",
    ),
    (
        "stevedore_plugin_call_seconds_total",
        "counter",
        "Wall time spent in plugin calls.",
    ),
    (
        "stevedore_http_responses_total",
        "counter",
        "API responses by status code.",
    ),
    (
        "stevedore_login_failures_total",
        "counter",
        "Refused logins.",
    ),
    (
        "stevedore_password_checks_total",
        "counter",
        "Passwords checked (argon2 runs).",
    ),
    (
        "stevedore_audit_dropped_total",
        "counter",
        "Audit log records dropped because the log's writer was behind.",
    ),
];

/// Write the `# HELP` and `# TYPE` lines of the family `name` of [`FAMILIES`].
fn family(o: &mut String, name: &str) {
    let (_, kind, help) = FAMILIES
        .iter()
        .find(|(n, _, _)| *n == name)
        .expect("every family rendered is in FAMILIES");
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// Write one sample, `name{label="value",...} value`, its label values
/// escaped (no braces without labels).
fn sample(o: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    o.push_str(name);
    if !labels.is_empty() {
        o.push('{');
        for (i, (label, v)) in labels.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(o, "{label}=\"{}\"", esc(v));
        }
        o.push('}');
    }
    let _ = writeln!(o, " {value}");
}

/// Write the family `name` of [`FAMILIES`] with a sample per entry: the
/// entry's label values, named by `labels`, and its value.
fn samples<const N: usize, S: AsRef<str>, V: std::fmt::Display>(
    o: &mut String,
    name: &str,
    labels: [&str; N],
    entries: impl IntoIterator<Item = ([S; N], V)>,
) {
    family(o, name);
    for (values, v) in entries {
        let pairs: [(&str, &str); N] = std::array::from_fn(|i| (labels[i], values[i].as_ref()));
        sample(o, name, &pairs, v);
    }
}

/// Render everything in the Prometheus text format (version 0.0.4).
pub fn render(stored: &Stored) -> String {
    let tasks = &stored.tasks;
    let mut out = String::new();
    let o = &mut out;
    let by_state = tasks.iter().map(|((c, s), n)| ([c, s], n));
    samples(o, "stevedore_tasks", ["category", "state"], by_state);
    let waiting = tasks
        .iter()
        .filter(|((_, s), _)| s == "waiting")
        .map(|((c, _), n)| ([c], n));
    samples(o, "stevedore_queue_depth", ["category"], waiting);
    let ages = stored.oldest_waiting_age.iter().map(|(c, age)| ([c], age));
    samples(
        o,
        "stevedore_queue_oldest_waiting_seconds",
        ["category"],
        ages,
    );
    with(|r| {
        let submitted = r.submitted.iter().map(|(c, n)| ([c], n));
        samples(
            o,
            "stevedore_tasks_submitted_total",
            ["category"],
            submitted,
        );
        let finished = flatten(&r.finished).map(|((c, s), n)| ([c, s], n));
        let labels = ["category", "state"];
        samples(o, "stevedore_tasks_finished_total", labels, finished);
        family(o, "stevedore_task_run_seconds");
        for (c, h) in &r.run_time {
            let c = c.as_str();
            for (le, n) in RUN_TIME_BUCKETS.iter().zip(&h.buckets) {
                let le = le.to_string();
                let labels = [("category", c), ("le", &le)];
                sample(o, "stevedore_task_run_seconds_bucket", &labels, n);
            }
            let labels = [("category", c), ("le", "+Inf")];
            sample(o, "stevedore_task_run_seconds_bucket", &labels, h.count);
            sample(
                o,
                "stevedore_task_run_seconds_sum",
                &[("category", c)],
                h.sum,
            );
            sample(
                o,
                "stevedore_task_run_seconds_count",
                &[("category", c)],
                h.count,
            );
        }
        let calls = flatten(&r.plugin_calls).flat_map(|((p, f), by_outcome)| {
            by_outcome
                .iter()
                .map(move |(outcome, n)| ([p, f, *outcome], n))
        });
        let labels = ["plugin", "function", "outcome"];
        samples(o, "stevedore_plugin_calls_total", labels, calls);
        let seconds = flatten(&r.plugin_call_seconds).map(|((p, f), s)| ([p, f], s));
        let labels = ["plugin", "function"];
        samples(o, "stevedore_plugin_call_seconds_total", labels, seconds);
        let codes = r
            .http_responses
            .iter()
            .map(|(code, n)| ([code.to_string()], n));
        samples(o, "stevedore_http_responses_total", ["code"], codes);
        family(o, "stevedore_login_failures_total");
        sample(o, "stevedore_login_failures_total", &[], r.login_failures);
        family(o, "stevedore_password_checks_total");
        sample(o, "stevedore_password_checks_total", &[], r.password_checks);
        family(o, "stevedore_audit_dropped_total");
        sample(o, "stevedore_audit_dropped_total", &[], r.audit_dropped);
    });
    out
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
