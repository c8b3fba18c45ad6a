//! Migrations reworded after release (comments only): a database that
//! applied the released text opens and records the current checksum; any
//! other difference is still refused by sqlx's check.

mod common;

use sha2::{Digest, Sha384};

/// The released checksums of migrations 3 and 4, per database.
fn released(url: &str) -> [(i64, &'static str); 2] {
    if url.starts_with("sqlite") {
        [
            (
                3,
                "fe1e983f7db4637bf4440f22dc9c0bfb1458e4bd97fdecc1dda67a603f0a0d4a2d49c42e504e98bf5506b0afbf09722c",
            ),
            (
                4,
                "b4f6c3ac01fd34ff9947022fcf8b40cf8503d0740a25e512704f867e535511c727d6deb307d9683dfa5ed943f4cb32ea",
            ),
        ]
    } else {
        [
            (
                3,
                "959f319e9e2fb65d4110ea4130d8f41fe158ec5c6e4fa4ffc21f32fd51d78176ba499383810824a19a92637bd88394e0",
            ),
            (
                4,
                "e5d973c5ac0c3700a1afbd57be71ba1ec2d1bb0fd6f10f7df66eeccae851629541af62b0ddb77cf632e8eb2ef3def75d",
            ),
        ]
    }
}

fn current(url: &str, version: i64) -> Vec<u8> {
    let text = match (url.starts_with("sqlite"), version) {
        (true, 3) => include_str!("../migrations/sqlite/0003_tasks.sql"),
        (true, _) => include_str!("../migrations/sqlite/0004_task_uploads.sql"),
        (false, 3) => include_str!("../migrations/postgres/0003_tasks.sql"),
        (false, _) => include_str!("../migrations/postgres/0004_task_uploads.sql"),
    };
    Sha384::digest(text.as_bytes()).to_vec()
}

/// Sets (or reads) the recorded checksum of a migration.
async fn checksum(url: &str, version: i64, set: Option<Vec<u8>>) -> Vec<u8> {
    let update = "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2";
    let select = "SELECT checksum FROM _sqlx_migrations WHERE version = $1";
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("connect");
        if let Some(c) = set {
            sqlx::query(update)
                .bind(c)
                .bind(version)
                .execute(&pool)
                .await
                .expect("update");
        }
        sqlx::query_scalar(select)
            .bind(version)
            .fetch_one(&pool)
            .await
            .expect("select")
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("connect");
        if let Some(c) = set {
            sqlx::query(update)
                .bind(c)
                .bind(version)
                .execute(&pool)
                .await
                .expect("update");
        }
        sqlx::query_scalar(select)
            .bind(version)
            .fetch_one(&pool)
            .await
            .expect("select")
    }
}

both!(
    a_database_that_applied_the_released_text_opens,
    |t: common::TestDb| async move {
        drop(common::open(&t).await);
        for (version, old) in released(&t.url) {
            checksum(&t.url, version, Some(hex::decode(old).expect("hex"))).await;
        }
        drop(common::open(&t).await);
        for (version, _) in released(&t.url) {
            assert_eq!(
                checksum(&t.url, version, None).await,
                current(&t.url, version),
                "migration {version}"
            );
        }
        // Any other recorded text is still a modified migration.
        checksum(&t.url, 3, Some(vec![0u8; 48])).await;
        let e = kiln_hub::db::Db::open(&t.url).await.err().expect("refused");
        assert!(
            e.message.contains("modified") || e.message.contains("checksum") || e.message.contains("3"),
            "{e}"
        );
    }
);
