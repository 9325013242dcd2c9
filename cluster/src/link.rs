//! The link to Redis: one multiplexed command connection (redis's `ConnectionManager`, which
//! reconnects with backoff on its own) shared by every part of the cluster, and the client from
//! which parts that subscribe open their own pub/sub connections.
//!
//! Invariant: every call has a timeout ([`CALL_TIMEOUT`]) and is timed in
//! [`REDIS_SECONDS`] by operation, so no caller ever waits on Redis longer than that, and a
//! Redis that is down costs each call at most that long.

use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::{Client, FromRedisValue};

/// Longest a single Redis call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1000);

/// Histogram of Redis round trips, by `op`.
pub const REDIS_SECONDS: &str = "liveshop_redis_duration_seconds";
/// Counter of Redis calls that failed or timed out, by `op`.
pub const REDIS_ERRORS: &str = "liveshop_redis_errors_total";

/// Why a call to Redis did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Redis answered with an error, or the connection failed.
    #[error("redis call {op} failed")]
    Redis {
        /// The operation.
        op: &'static str,
        /// What redis said.
        #[source]
        source: redis::RedisError,
    },
    /// Redis did not answer within [`CALL_TIMEOUT`].
    #[error("redis call {op} timed out")]
    Timeout {
        /// The operation.
        op: &'static str,
    },
}

/// The shared connection to Redis. Cheap to clone.
#[derive(Clone)]
pub struct Link {
    client: Client,
    manager: ConnectionManager,
}

impl Link {
    /// Opens the link lazily: a node starts (and serves its own connections) while Redis is
    /// down, and the manager connects, then reconnects with backoff, on its own.
    pub fn open(url: &str) -> Result<Self, redis::RedisError> {
        let client = Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(1000));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self { client, manager })
    }

    /// The client, for parts that open their own pub/sub connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, LinkError> {
        let mut conn = self.manager.clone();
        timed(op, cmd.query_async(&mut conn)).await
    }

    /// Runs a pipeline (or a `MULTI` transaction when the pipeline is atomic).
    pub async fn pipe<T: FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T, LinkError> {
        let mut conn = self.manager.clone();
        timed(op, pipe.query_async(&mut conn)).await
    }

    /// Runs a Lua script (EVALSHA, loading it on first use).
    pub async fn script<T: FromRedisValue>(
        &self,
        op: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, LinkError> {
        let mut conn = self.manager.clone();
        timed(op, invocation.invoke_async(&mut conn)).await
    }
}

/// Awaits a Redis call with [`CALL_TIMEOUT`], recording how long it took and whether it failed.
pub async fn timed<T>(
    op: &'static str,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, LinkError> {
    let started = Instant::now();
    let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(LinkError::Redis { op, source }),
        Err(_) => Err(LinkError::Timeout { op }),
    };
    metrics::histogram!(REDIS_SECONDS, "op" => op).record(started.elapsed().as_secs_f64());
    if result.is_err() {
        metrics::counter!(REDIS_ERRORS, "op" => op).increment(1);
    }
    result
}
