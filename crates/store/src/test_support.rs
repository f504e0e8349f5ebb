//! Test support (feature `test-support`): fresh databases for suites that run on both backends.

use crate::{Result, StoreError};

/// The PostgreSQL server tests may create databases on, when `CALLBRIDGE_TEST_DATABASE_URL`
/// names one (the CI does): its admin URL.
pub fn test_postgres_server() -> Option<String> {
    std::env::var("CALLBRIDGE_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// For a test that runs on PostgreSQL only: the server's admin URL and a fresh database there,
/// or `None` when no server is named — the test is skipped, and says so.
pub async fn postgres_or_skip() -> Option<(String, String)> {
    let Some(admin) = test_postgres_server() else {
        eprintln!("PostgreSQL skipped: CALLBRIDGE_TEST_DATABASE_URL is not set");
        return None;
    };
    let url = fresh_postgres_database(&admin).await.expect("create a test database");
    Some((admin, url))
}

/// A new, empty PostgreSQL database on the server `admin_url` points at; returns its URL.
pub async fn fresh_postgres_database(admin_url: &str) -> Result<String> {
    use sqlx::Connection;
    let name = format!("callbridge_test_{:016x}", fastrand::u64(..));
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
    conn.close().await?;
    let (base, _) = admin_url.rsplit_once('/').ok_or_else(|| StoreError::UnsupportedUrl(admin_url.to_string()))?;
    Ok(format!("{base}/{name}"))
}

/// Drops a database [`fresh_postgres_database`] made (`url`), closing whatever is still
/// connected to it, through the server `admin_url` points at.
pub async fn drop_postgres_database(admin_url: &str, url: &str) -> Result<()> {
    use sqlx::Connection;
    let name = url.rsplit_once('/').map(|(_, name)| name).unwrap_or_default();
    if !name.starts_with("callbridge_test_") || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(StoreError::UnsupportedUrl(url.to_string()));
    }
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// A database as callbridge's first schema wrote it (from the dumps in `tests/fixtures/`): one
/// call landed (its activity, caller index entry and sync state), four jobs queued. On the
/// PostgreSQL server `admin_url` names when given, else in a new SQLite file at `sqlite_path`.
/// Returns its URL; opening it with [`crate::open`] runs today's migrations over it.
pub async fn first_schema_database(admin_url: Option<&str>, sqlite_path: &std::path::Path) -> Result<String> {
    use sqlx::Connection;
    match admin_url {
        Some(admin) => {
            let url = fresh_postgres_database(admin).await?;
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            sqlx::raw_sql(include_str!("../tests/fixtures/first-schema.postgres.sql")).execute(&mut conn).await?;
            conn.close().await?;
            Ok(url)
        }
        None => {
            let url = format!("sqlite://{}", sqlite_path.display());
            let options =
                <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)?.create_if_missing(true);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
            sqlx::raw_sql(include_str!("../tests/fixtures/first-schema.sqlite.sql")).execute(&mut conn).await?;
            conn.close().await?;
            Ok(url)
        }
    }
}
