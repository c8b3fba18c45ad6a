//! Device channels (docs/channels.md): the signing key's rows (a nonce the
//! key file derives the key from, and the public half to check it), and
//! every publication of a channel's index, numbered per tag.

use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Current, Dialect};
use crate::db::now;
use crate::error::{HubError, Result};
use crate::model::Principal;

/// The active signing key.
#[derive(Clone, Debug)]
pub struct KeyRow {
    pub key_id: String,
    pub nonce: String,
    pub public_key: String,
    pub created: i64,
}

/// One publication of a channel.
#[derive(Clone, Debug)]
pub struct IndexRow {
    pub channel: String,
    pub sequence: i64,
    pub event: i64,
    pub time: i64,
    pub content_sha256: String,
    pub body: String,
    pub signature: String,
    pub images: i64,
}

/// What a publication stores, made for its sequence number.
pub type MakeIndex<'a> = &'a (dyn Fn(i64) -> Result<(String, String)> + Send + Sync);

const INDEX_COLS: &str = "n.name, i.sequence, i.event, i.time, i.content_sha256, i.body, i.signature, i.images";

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
    pub async fn channel_key(&self) -> Result<Option<KeyRow>> {
        let r = sqlx::query(
            "SELECT k.key_id, k.nonce, k.public_key, e.time FROM channel_keys k JOIN events e ON e.id = k.create_event \
             WHERE k.revoke_event IS NULL",
        )
        .fetch_optional(&self.read)
        .await?;
        r.map(|r| {
            Ok(KeyRow {
                key_id: r.try_get(0)?,
                nonce: r.try_get(1)?,
                public_key: r.try_get(2)?,
                created: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Replaces the signing key (the old one's indexes stay as signed).
    pub async fn set_channel_key(&self, who: &Principal, key_id: &str, nonce: &str, public_key: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let ev = Self::event(&mut tx, who, &format!("new channel signing key {key_id}")).await?;
        Self::revoke_rows(&mut tx, ev, Current::new("channel_keys", "1 = 1", [])).await?;
        sqlx::query("INSERT INTO channel_keys (key_id, nonce, public_key, create_event) VALUES ($1, $2, $3, $4)")
            .bind(key_id)
            .bind(nonce)
            .bind(public_key)
            .bind(ev)
            .execute(&mut *tx)
            .await
            .map_err(|e| crate::db::rules::exists(e, || "another signing key was made meanwhile".into()))?;
        tx.commit().await?;
        Ok(())
    }

    fn index_row(r: &D::Row) -> Result<IndexRow> {
        Ok(IndexRow {
            channel: r.try_get(0)?,
            sequence: r.try_get(1)?,
            event: r.try_get(2)?,
            time: r.try_get(3)?,
            content_sha256: r.try_get(4)?,
            body: r.try_get(5)?,
            signature: r.try_get(6)?,
            images: r.try_get(7)?,
        })
    }

    /// The last publication of channel `tag` (the tag of that name now),
    /// if any.
    pub async fn channel_index(&self, tag: &str) -> Result<Option<IndexRow>> {
        let sql = format!(
            "SELECT {INDEX_COLS} FROM channel_indexes i JOIN tag_names n ON n.tag_id = i.tag_id \
             AND n.revoke_event IS NULL AND n.name = i.channel WHERE n.name = $1 ORDER BY i.sequence DESC LIMIT 1"
        );
        let r = sqlx::query(&sql).bind(tag).fetch_optional(&self.read).await?;
        r.as_ref().map(Self::index_row).transpose()
    }

    /// Every channel's last publication (tags that exist now, under their
    /// name now).
    pub async fn channel_indexes(&self) -> Result<Vec<IndexRow>> {
        let sql = format!(
            "SELECT {INDEX_COLS} FROM channel_indexes i JOIN tag_names n ON n.tag_id = i.tag_id \
             AND n.revoke_event IS NULL AND n.name = i.channel \
             WHERE i.sequence = (SELECT MAX(x.sequence) FROM channel_indexes x WHERE x.channel = i.channel) \
             ORDER BY n.name"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.read).await?;
        rows.iter().map(Self::index_row).collect()
    }

    /// Publishes channel `tag` with its content as of `event`
    /// (`content_sha256`), when that differs from the tag's last
    /// publication and is not older than it — or always with `force`: the
    /// channel's next sequence number (never one used under the name
    /// before), and `make` signs the index for it. Publications of one tag
    /// are serialised (the tag's row is locked). Returns the publication,
    /// and whether it is new.
    pub async fn publish_channel(
        &self,
        tag: &str,
        event: i64,
        content_sha256: &str,
        images: i64,
        force: bool,
        make: MakeIndex<'_>,
    ) -> Result<(IndexRow, bool)> {
        let mut tx = self.begin_write().await?;
        let t = Self::tag_for_change(&mut tx, tag).await?;
        let last: Option<(i64, String)> = sqlx::query_as(
            "SELECT event, content_sha256 FROM channel_indexes WHERE tag_id = $1 AND channel = $2 \
             ORDER BY sequence DESC LIMIT 1",
        )
        .bind(t.id)
        .bind(&t.name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((last_event, sha)) = &last
            && !force
            && (sha == content_sha256 || *last_event > event)
        {
            // Unchanged, or another publisher got there with newer content.
            drop(tx);
            let row = self.channel_index(tag).await?;
            return row
                .map(|r| (r, false))
                .ok_or_else(|| HubError::conflict("the channel changed meanwhile"));
        }
        let used: Option<i64> = sqlx::query_scalar("SELECT MAX(sequence) FROM channel_indexes WHERE channel = $1")
            .bind(&t.name)
            .fetch_one(&mut *tx)
            .await?;
        let sequence = used.unwrap_or(0) + 1;
        let (body, signature) = make(sequence)?;
        let time = now();
        sqlx::query(
            "INSERT INTO channel_indexes (tag_id, channel, sequence, event, time, content_sha256, body, signature, \
             images) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(t.id)
        .bind(&t.name)
        .bind(sequence)
        .bind(event)
        .bind(time)
        .bind(content_sha256)
        .bind(&body)
        .bind(&signature)
        .bind(images)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::db::rules::exists(e, || format!("channel {tag} was published meanwhile")))?;
        tx.commit().await?;
        let row = IndexRow {
            channel: t.name,
            sequence,
            event,
            time,
            content_sha256: content_sha256.to_string(),
            body,
            signature,
            images,
        };
        Ok((row, true))
    }

    /// The tags whose own extra sets `channel.publish` to true.
    pub async fn auto_channels(&self) -> Result<Vec<String>> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT n.name, e.value FROM tag_extra e JOIN tag_names n ON n.tag_id = e.tag_id \
             AND n.revoke_event IS NULL WHERE e.key = 'channel.publish' AND e.revoke_event IS NULL \
             AND NOT e.blocked ORDER BY n.name",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|(_, v)| matches!(v.as_deref().map(str::trim), Some("true" | "\"true\"")))
            .map(|(n, _)| n)
            .collect())
    }
}
