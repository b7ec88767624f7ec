//! `providers`: runs a fake provider (payments and inventory) until killed.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = std::env::args()
        .nth(1)
        .map(|text| text.parse::<u16>())
        .transpose()
        .map_err(|error| std::io::Error::other(format!("the port must be a number: {error}")))?
        .unwrap_or(0);
    let provider = reprise_providers::Provider::start(port).await?;
    println!("{}", provider.url());
    std::future::pending::<()>().await;
    Ok(())
}
