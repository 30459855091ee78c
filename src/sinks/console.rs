//! `console`: prints each event as one JSON line, for trying pipelines out.

use std::io::Write;

use async_trait::async_trait;
use serde::Deserialize;

use crate::component::{BoxError, BuildContext, Check, Input, Sink, SinkContext};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `stdout` (default) or `stderr`.
    #[serde(default)]
    pub target: ConsoleTarget,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleTarget {
    #[default]
    Stdout,
    Stderr,
}

impl ConsoleConfig {
    pub fn check(&self, _cx: &mut Check<'_>) {}

    pub fn build(&self, _cx: &BuildContext<'_>) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(Console { target: self.target }))
    }
}

pub struct Console {
    target: ConsoleTarget,
}

#[async_trait]
impl Sink for Console {
    async fn run(self: Box<Self>, mut input: Input, cx: SinkContext) -> Result<(), BoxError> {
        let mut batch = Vec::new();
        while let Some(first) = input.recv().await {
            batch.push(first);
            input.drain_ready(&mut batch, 255);
            let n = batch.len() as u64;
            let mut text = String::new();
            for e in batch.drain(..) {
                text.push_str(&e.to_json().to_string());
                text.push('\n');
            }
            let target = self.target;
            // Writing to a pipe can block; keep it off the async workers.
            let res = tokio::task::spawn_blocking(move || match target {
                ConsoleTarget::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
                ConsoleTarget::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
            })
            .await?;
            if let Err(e) = res {
                cx.metrics.error();
                // A closed stdout will not come back: stop instead of spinning.
                return Err(e.into());
            }
            cx.metrics.sent(n);
        }
        Ok(())
    }
}
