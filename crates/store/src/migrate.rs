//! Schema migrations: the `.sql` files under `migrations/<backend>/`, compiled in, applied in
//! order by version, each in its own transaction, and recorded in `schema_version` — the
//! table the first schema already kept, so databases written by earlier releases carry forward.

/// One schema change: its version (the file's number) and its SQL.
pub(crate) struct Migration {
    pub version: i64,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:expr, $backend:literal, $file:literal) => {
        Migration { version: $version, sql: include_str!(concat!("../migrations/", $backend, "/", $file)) }
    };
}

pub(crate) const SQLITE: &[Migration] = &[
    migration!(1, "sqlite", "0001_initial.sql"),
    migration!(2, "sqlite", "0002_portals.sql"),
    migration!(3, "sqlite", "0003_source_sessions.sql"),
    migration!(4, "sqlite", "0004_source_marks.sql"),
    migration!(5, "sqlite", "0005_bookings.sql"),
    migration!(6, "sqlite", "0006_coalescing.sql"),
    migration!(7, "sqlite", "0007_dedup_runs.sql"),
    migration!(8, "sqlite", "0008_forgotten_callers.sql"),
    migration!(9, "sqlite", "0009_oauth_states.sql"),
    migration!(10, "sqlite", "0010_rejections.sql"),
    migration!(11, "sqlite", "0011_job_attempts.sql"),
    migration!(12, "sqlite", "0012_inbox_body_lz4.sql"),
];

pub(crate) const POSTGRES: &[Migration] = &[
    migration!(1, "postgres", "0001_initial.sql"),
    migration!(2, "postgres", "0002_shared_budget.sql"),
    migration!(3, "postgres", "0003_portals.sql"),
    migration!(4, "postgres", "0004_source_sessions.sql"),
    migration!(5, "postgres", "0005_source_marks.sql"),
    migration!(6, "postgres", "0006_bookings.sql"),
    migration!(7, "postgres", "0007_coalescing.sql"),
    migration!(8, "postgres", "0008_dedup_runs.sql"),
    migration!(9, "postgres", "0009_forgotten_callers.sql"),
    migration!(10, "postgres", "0010_oauth_states.sql"),
    migration!(11, "postgres", "0011_rejections.sql"),
    migration!(12, "postgres", "0012_job_attempts.sql"),
    migration!(13, "postgres", "0013_inbox_lz4.sql"),
    migration!(14, "postgres", "0014_inbox_body_packed.sql"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_file_numbers_in_order() {
        for list in [SQLITE, POSTGRES] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1);
                assert!(!m.sql.trim().is_empty());
            }
        }
    }
}
