//! `file`: appends each event as one JSON line to a file (debugging, archiving,
//! feeding other tools).

use std::path::PathBuf;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::component::{BoxError, BuildContext, Check, Claim, Input, Sink, SinkContext};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to; relative to the pipeline file's folder.
    pub path: PathBuf,
}

impl FileConfig {
    pub fn check(&self, cx: &mut Check<'_>) {
        if self.path.as_os_str().is_empty() {
            cx.error(Some("path"), "`path` must not be empty");
            return;
        }
        let path = cx.resolve(&self.path);
        cx.claim(Some("path"), Claim::File(path));
    }

    pub fn build(&self, cx: &BuildContext<'_>) -> Result<Box<dyn Sink>, BoxError> {
        Ok(Box::new(File {
            path: cx.resolve(&self.path),
        }))
    }
}

pub struct File {
    path: PathBuf,
}

#[async_trait]
impl Sink for File {
    async fn run(self: Box<Self>, mut input: Input, cx: SinkContext) -> Result<(), BoxError> {
        if let Some(dir) = self.path.parent() {
            if !dir.as_os_str().is_empty() {
                tokio::fs::create_dir_all(dir).await?;
            }
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        let mut batch = Vec::new();
        let mut buf = Vec::new();
        while let Some(first) = input.recv().await {
            batch.push(first);
            input.drain_ready(&mut batch, 1023);
            buf.clear();
            for e in &batch {
                serde_json::to_writer(&mut buf, &e.to_json())?;
                buf.push(b'\n');
            }
            let n = batch.len() as u64;
            batch.clear();
            if let Err(e) = async {
                file.write_all(&buf).await?;
                file.flush().await
            }
            .await
            {
                cx.metrics.error();
                tracing::error!(component = %cx.id, path = %self.path.display(), error = %e, "Writing events failed");
                continue;
            }
            cx.metrics.sent(n);
        }
        file.sync_all().await?;
        Ok(())
    }
}
