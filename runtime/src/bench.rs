//! `reprise bench`: throughput and latency on the durable SQLite store.

#[derive(clap::Args)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
