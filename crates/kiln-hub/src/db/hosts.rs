//! Hosts: builders registered with the hub (a user of kind `host` with a
//! token), their heartbeats and the host a principal is.

use sqlx::{ColumnIndex, Encode, Executor, IntoArguments, Row, Type};

use super::backend::{Backend, Col, Dialect};
use crate::db::now;
use crate::db::rules::{check_name, exists};
use crate::error::{HubError, Result};
use crate::model::{HostInfo, HostState, NewHost, Principal};

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
    pub async fn create_host(&self, who: &Principal, h: &NewHost, token_hash: &str) -> Result<()> {
        check_name("host name", &h.name)?;
        check_name("arch", &h.arch)?;
        if h.channels.is_empty() || !(1..=1000).contains(&h.capacity) {
            return Err(HubError::bad_request(
                "a host needs at least one channel and a capacity of 1 to 1000",
            ));
        }
        for c in &h.channels {
            check_name("channel", c)?;
        }
        let mut tx = self.begin_write().await?;
        Self::event(&mut tx, who, &format!("add host {}", h.name)).await?;
        let uid: i64 = sqlx::query_scalar(
            "INSERT INTO users (name, password_hash, kind, created) VALUES ($1, NULL, 'host', $2) RETURNING id",
        )
        .bind(&h.name)
        .bind(now())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| exists(e, || format!("a user or host `{}` exists", h.name)))?;
        sqlx::query(
            "INSERT INTO hosts (user_id, name, arch, channels, capacity, enabled) VALUES ($1, $2, $3, $4, $5, TRUE)",
        )
        .bind(uid)
        .bind(&h.name)
        .bind(&h.arch)
        .bind(h.channels.join(","))
        .bind(h.capacity)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO tokens (user_id, hash, name, created) VALUES ($1, $2, 'host', $3)")
            .bind(uid)
            .bind(token_hash)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_hosts(&self) -> Result<Vec<HostInfo>> {
        let rows = sqlx::query(
            "SELECT h.name, h.arch, h.channels, h.capacity, h.enabled, h.last_seen, \
             (SELECT COUNT(*) FROM tasks t WHERE t.host_id = h.id AND t.state = 'OPEN') \
             FROM hosts h ORDER BY h.name",
        )
        .fetch_all(&self.read)
        .await?;
        let now = now();
        rows.into_iter()
            .map(|r| {
                let channels: String = r.try_get(2)?;
                Ok(HostInfo {
                    name: r.try_get(0)?,
                    arch: r.try_get(1)?,
                    channels: channels.split(',').map(str::to_string).collect(),
                    capacity: r.try_get(3)?,
                    enabled: r.try_get(4)?,
                    last_seen: r.try_get(5)?,
                    load: r.try_get(6)?,
                    state: HostState::judge(r.try_get(4)?, r.try_get(5)?, now, self.lease),
                })
            })
            .collect()
    }

    /// The host a principal is: (id, arch, channels, capacity).
    pub(super) async fn host_of(&self, who: &Principal) -> Result<(i64, String, Vec<String>, i64)> {
        let h = who.host.as_ref().ok_or_else(|| match who.id {
            None => HubError::unauthorized("builders authenticate with their host token"),
            Some(_) => HubError::forbidden(format!("{} is not a host", who.name)),
        })?;
        if !h.enabled {
            return Err(HubError::forbidden(format!("host {} is disabled", who.name)));
        }
        Ok((h.id, h.arch.clone(), h.channels.clone(), h.capacity))
    }

    /// A builder is alive: its leases are renewed. Returns the ids
    /// of its tasks that were cancelled, for it to stop.
    pub async fn heartbeat(&self, who: &Principal) -> Result<Vec<i64>> {
        let (host, ..) = self.host_of(who).await?;
        let t = now();
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE hosts SET last_seen = $1 WHERE id = $2")
            .bind(t)
            .bind(host)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE tasks SET lease_expires = $1 WHERE host_id = $2 AND state = 'OPEN'")
            .bind(t + self.lease)
            .bind(host)
            .execute(&mut *tx)
            .await?;
        let cancel: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM tasks WHERE host_id = $1 AND state = 'CANCELED' AND finished >= $2")
                .bind(host)
                .bind(t - 2 * self.lease)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(cancel)
    }
}
