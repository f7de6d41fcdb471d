//! Log lines captured in memory, for tests that check what a component logs and under which spans.
//!
//! The subscriber is tracing-subscriber's fmt layer, as the binaries use it (text, no colours, debug
//! level), writing into a buffer the test reads. Install it for one thread with
//! `tracing::subscriber::set_default` (a current-thread tokio runtime polls every task on that thread).

use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::format::FmtSpan;

/// What a capturing subscriber wrote. Clones share the buffer.
#[derive(Clone)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn new() -> Self {
        keep_a_second_dispatcher();
        CapturedLogs(Arc::default())
    }

    /// A subscriber that writes every event at debug level and above here, each line prefixed with its
    /// spans and their fields (`admission{uid=… namespace=…}: target: message fields`).
    pub fn subscriber(&self) -> Box<dyn tracing::Subscriber + Send + Sync> {
        self.with_span_events(FmtSpan::NONE)
    }

    /// Like [`Self::subscriber`], with a line `new` for every span opened, so a test can see a span
    /// that logged nothing.
    pub fn subscriber_with_new_spans(&self) -> Box<dyn tracing::Subscriber + Send + Sync> {
        self.with_span_events(FmtSpan::NEW)
    }

    fn with_span_events(&self, events: FmtSpan) -> Box<dyn tracing::Subscriber + Send + Sync> {
        let writer = self.clone();
        Box::new(
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::DEBUG)
                .with_span_events(events)
                .finish(),
        )
    }

    /// The lines written since the last call.
    pub fn take(&self) -> Vec<String> {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        String::from_utf8_lossy(&bytes).lines().map(str::to_owned).collect()
    }
}

impl Default for CapturedLogs {
    fn default() -> Self {
        Self::new()
    }
}

/// tracing-core caches, per callsite, whether any subscriber wants it. While exactly one dispatcher is
/// registered it asks only the *registering thread's* default: a test thread without a subscriber that
/// reaches a span first (another test of the same binary running in parallel) would then switch that
/// span off for the capturing thread too, for good. With a second dispatcher alive the cache is built
/// from every registered one, so a capturing thread always sees its spans.
fn keep_a_second_dispatcher() {
    static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
}

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::CapturedLogs;

    #[test]
    fn lines_carry_their_spans_and_are_taken_once() {
        let logs = CapturedLogs::new();
        tracing::subscriber::with_default(logs.subscriber_with_new_spans(), || {
            let span = tracing::info_span!("outer", key = "shop/web");
            let _in = span.enter();
            tracing::debug!(n = 3, "inside");
        });
        let lines = logs.take();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("outer{key=\"shop/web\"}") && lines[0].ends_with("new"), "{}", lines[0]);
        assert!(lines[1].contains("outer{key=\"shop/web\"}") && lines[1].contains("inside n=3"), "{}", lines[1]);
        assert!(logs.take().is_empty());
    }
}
