//! Logging for background tasks that retry: one warning when a task starts failing and
//! one line when it recovers, instead of a line every second of an outage.

pub struct Outage {
    /// What the task does, for the log lines.
    task: &'static str,
    failing: bool,
}

impl Outage {
    pub fn new(task: &'static str) -> Outage {
        Outage { task, failing: false }
    }

    /// Notes one attempt's result; returns whether the task is failing now.
    pub fn record<T, E: std::fmt::Display>(&mut self, result: &Result<T, E>) -> bool {
        match result {
            Ok(_) if self.failing => {
                tracing::info!(task = self.task, "recovered");
                self.failing = false;
            }
            Ok(_) => {}
            Err(error) if !self.failing => {
                tracing::warn!(task = self.task, %error, "failing; nothing is lost, it retries and catches up");
                self.failing = true;
            }
            Err(_) => {}
        }
        self.failing
    }
}
