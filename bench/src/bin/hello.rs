//! The ceiling: a bare axum server answering `hello` on every path, as cheap as HTTP gets.

use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8789".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let app = Router::new().fallback(|| async { "hello" });
    axum::serve(listener, app).await
}
