//! The health gate of the update categories: after a container is
//! (re)created, wait until its health check says `healthy`, or, when it has
//! none, until it has kept running for a while; fail at once when it exits,
//! restarts or turns `unhealthy`, and when the deadline passes.

use crate::containers::{self, ContainerHealth};
use crate::{task, Error, RuntimeKind};

/// How long to wait, and for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    /// Most milliseconds to wait for a health check to pass.
    pub timeout_ms: u64,
    /// Milliseconds a container without a health check must keep running.
    pub stable_ms: u64,
    /// Milliseconds between two looks.
    pub poll_ms: u32,
}

/// What one look at a container says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Look again later.
    Wait,
    /// The container passed.
    Pass,
    /// The container failed, saying why.
    Fail(String),
}

impl Failed {
    /// Why, in words.
    pub fn reason(&self) -> String {
        match self {
            Failed::Unhealthy(why) => why.clone(),
            Failed::Cancelled => "cancelled".into(),
            Failed::Runtime(e) => format!("reading its health: {e:?}"),
        }
    }
}

/// Why a gate did not pass.
#[derive(Debug, Clone)]
pub enum Failed {
    /// The container failed its check (the reason in words).
    Unhealthy(String),
    /// The task was cancelled while waiting.
    Cancelled,
    /// The runtime could not be asked.
    Runtime(Error),
}

impl Gate {
    /// The verdict on `h` after `waited_ms` milliseconds.
    pub fn judge(&self, h: &ContainerHealth, waited_ms: u64) -> Verdict {
        if !h.running || matches!(h.status.as_str(), "restarting" | "exited" | "dead") {
            return Verdict::Fail(format!(
                "the container {} with code {}",
                if h.status == "restarting" {
                    "keeps restarting, last exited"
                } else {
                    "exited"
                },
                h.exit_code
            ));
        }
        match h.health.as_deref() {
            Some("healthy") => Verdict::Pass,
            Some("unhealthy") => {
                let output = if h.last_probe_output.is_empty() {
                    String::new()
                } else {
                    format!(" (last probe: {})", h.last_probe_output)
                };
                Verdict::Fail(format!(
                    "health check failed: unhealthy after {} failed probe{}{output}",
                    h.failing_streak,
                    if h.failing_streak == 1 { "" } else { "s" }
                ))
            }
            Some(_) if waited_ms >= self.timeout_ms => Verdict::Fail(format!(
                "health check failed: not healthy after {} s",
                self.timeout_ms / 1000
            )),
            Some(_) => Verdict::Wait,
            None if waited_ms >= self.stable_ms => Verdict::Pass,
            None => Verdict::Wait,
        }
    }

    /// Watch `container` until it passes or fails (see [`Gate::judge`]).
    pub fn wait(&self, runtime: RuntimeKind, container: &str) -> Result<(), Failed> {
        self.wait_all(runtime, &[container.to_string()])
            .map_err(|(_, failed)| failed)
    }

    /// Watch `containers` together until each has passed, or one fails:
    /// then that one's name and why.
    pub fn wait_all(
        &self,
        runtime: RuntimeKind,
        containers: &[String],
    ) -> Result<(), (String, Failed)> {
        let mut pending: Vec<&String> = containers.iter().collect();
        let mut waited: u64 = 0;
        loop {
            let mut still = Vec::new();
            for c in pending {
                let h = containers::health(runtime, c).map_err(|e| {
                    let failed = match e {
                        Error::Cancelled => Failed::Cancelled,
                        e => Failed::Runtime(e),
                    };
                    (c.clone(), failed)
                })?;
                match self.judge(&h, waited) {
                    Verdict::Pass => {}
                    Verdict::Fail(why) => return Err((c.clone(), Failed::Unhealthy(why))),
                    Verdict::Wait => still.push(c),
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            pending = still;
            if task::sleep(self.poll_ms) {
                return Err((pending[0].clone(), Failed::Cancelled));
            }
            waited += u64::from(self.poll_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(status: &str, health: Option<&str>, streak: u32) -> ContainerHealth {
        ContainerHealth {
            status: status.into(),
            running: status == "running",
            exit_code: if status == "exited" { 3 } else { 0 },
            health: health.map(str::to_string),
            failing_streak: streak,
            last_probe_output: if streak > 0 {
                "down".into()
            } else {
                String::new()
            },
        }
    }

    const GATE: Gate = Gate {
        timeout_ms: 60_000,
        stable_ms: 10_000,
        poll_ms: 500,
    };

    #[test]
    fn a_health_check_decides_when_there_is_one() {
        assert_eq!(
            GATE.judge(&h("running", Some("starting"), 0), 0),
            Verdict::Wait
        );
        assert_eq!(
            GATE.judge(&h("running", Some("healthy"), 0), 0),
            Verdict::Pass
        );
        assert_eq!(
            GATE.judge(&h("running", Some("unhealthy"), 3), 0),
            Verdict::Fail(
                "health check failed: unhealthy after 3 failed probes (last probe: down)".into()
            )
        );
        assert_eq!(
            GATE.judge(&h("running", Some("starting"), 1), 60_000),
            Verdict::Fail("health check failed: not healthy after 60 s".into())
        );
    }

    #[test]
    fn without_one_the_container_must_keep_running() {
        assert_eq!(GATE.judge(&h("running", None, 0), 9_500), Verdict::Wait);
        assert_eq!(GATE.judge(&h("running", None, 0), 10_000), Verdict::Pass);
        assert_eq!(
            GATE.judge(&h("exited", None, 0), 500),
            Verdict::Fail("the container exited with code 3".into())
        );
        let mut restarting = h("restarting", None, 0);
        restarting.running = true;
        assert!(matches!(GATE.judge(&restarting, 0), Verdict::Fail(m) if m.contains("restarting")));
    }
}
