//! Source images uploaded to the hub (`kiln image import --hub`): their
//! rows; the blobs are the store's.

use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Dialect};
use crate::db::rules::exists;
use crate::error::{HubError, Result};
use crate::model::{Image, Principal};

impl<D: Dialect> Backend<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> D::Arguments<'q>: IntoArguments<'q, D>,
    usize: ColumnIndex<D::Row>,
    i64: Col<D>,
    Option<i64>: Col<D>,
    bool: Col<D>,
    String: Col<D>,
    Option<String>: Col<D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    for<'q> Option<&'q str>: Encode<'q, D> + Type<D>,
{
    pub async fn add_image(&self, who: &Principal, i: &Image, key: &str) -> Result<()> {
        let uid = who
            .id
            .ok_or_else(|| HubError::unauthorized("log in to upload images"))?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO images (name, version, format, size, sha256, store_key, uploader_id, time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&i.name)
        .bind(&i.version)
        .bind(&i.format)
        .bind(i.size)
        .bind(&i.sha256)
        .bind(key)
        .bind(uid)
        .bind(i.time)
        .execute(&mut *tx)
        .await
        .map_err(|e| exists(e, || format!("image {}@{} exists", i.name, i.version)))?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn images(&self, name: Option<&str>) -> Result<Vec<(Image, String)>> {
        let rows = sqlx::query(
            "SELECT i.name, i.version, i.format, i.size, i.sha256, u.name, i.time, i.store_key FROM images i \
             JOIN users u ON u.id = i.uploader_id WHERE ($1 IS NULL OR i.name = $1) ORDER BY i.name, i.id",
        )
        .bind(name)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    Image {
                        name: r.try_get(0)?,
                        version: r.try_get(1)?,
                        format: r.try_get(2)?,
                        size: r.try_get(3)?,
                        sha256: r.try_get(4)?,
                        uploader: r.try_get(5)?,
                        time: r.try_get(6)?,
                    },
                    r.try_get(7)?,
                ))
            })
            .collect()
    }

    pub async fn remove_image(&self, name: &str, version: &str) -> Result<String> {
        let mut tx = self.begin_write().await?;
        let key: String = sqlx::query_scalar("SELECT store_key FROM images WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| HubError::not_found(format!("unknown image {name}@{version}")))?;
        sqlx::query("DELETE FROM images WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(key)
    }
}
