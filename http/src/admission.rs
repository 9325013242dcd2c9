//! Admission: the limits a connection meets before any work is done for it.
//!
//! Two phases, two sets of limits:
//! - a TCP connection that still speaks HTTP (from accept until it ends or is upgraded) holds an
//!   [`HttpPermit`]: a cap for the whole process (`LIVESHOP_MAX_HTTP_CONNECTIONS`) and one per
//!   client address (`LIVESHOP_MAX_HTTP_CONNECTIONS_PER_IP`), checked by the accept loop;
//! - a WebSocket holds a [`WsPermit`] from its upgrade request until it ends: a cap on open
//!   WebSockets (`LIVESHOP_MAX_CONNECTIONS`, 503) and an upgrade rate per client address
//!   (`LIVESHOP_UPGRADES_PER_IP_PER_SEC`, 429), checked first by the gateway.
//!
//! Together they bound the descriptors any client can hold: idle or slow HTTP connections by the
//! HTTP caps (and the header-read timeout, `serve.rs`), WebSockets by the connection cap. The
//! cost is per connection (one atomic add and one map entry update at each end), never per
//! message.
//!
//! IPv6 clients are counted per /64, the block one subscriber usually gets, so an address
//! cannot be varied within it to escape the per-address limits.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use liveshop_engine::limits::TokenBucket;

use crate::config::Config;

/// Counter of connections refused at admission, by `reason` (the [`Refusal`] labels).
pub const REFUSED: &str = "liveshop_connections_refused_total";

/// Why a connection was refused; each is a fixed metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `LIVESHOP_MAX_HTTP_CONNECTIONS` reached (503).
    HttpConnections,
    /// `LIVESHOP_MAX_HTTP_CONNECTIONS_PER_IP` reached (429).
    HttpConnectionsPerIp,
    /// `LIVESHOP_MAX_CONNECTIONS` reached (503).
    WebSockets,
    /// `LIVESHOP_UPGRADES_PER_IP_PER_SEC` exceeded (429); milliseconds until the next upgrade
    /// would be admitted.
    UpgradeRate(u64),
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::HttpConnections => "http_connections",
            Self::HttpConnectionsPerIp => "http_connections_per_ip",
            Self::WebSockets => "websocket_connections",
            Self::UpgradeRate(_) => "upgrade_rate",
        }
    }

    fn count(self) -> Self {
        metrics::counter!(REFUSED, "reason" => self.label()).increment(1);
        self
    }
}

/// The counters and limits of admission, shared by the accept loop and the gateway.
pub struct Admission {
    max_http: usize,
    max_http_per_ip: usize,
    max_websockets: usize,
    upgrades_per_sec: f64,
    http_open: AtomicUsize,
    http_per_ip: DashMap<IpAddr, usize>,
    websockets_open: AtomicUsize,
    /// Upgrade allowance per client address, with when it was last used (ms).
    upgrades: DashMap<IpAddr, (TokenBucket, i64)>,
}

impl Admission {
    /// Limits from the configuration; registers the refusal counters at zero.
    pub fn new(config: &Config) -> Self {
        for reason in [
            Refusal::HttpConnections,
            Refusal::HttpConnectionsPerIp,
            Refusal::WebSockets,
            Refusal::UpgradeRate(0),
        ] {
            metrics::counter!(REFUSED, "reason" => reason.label()).increment(0);
        }
        Self {
            max_http: config.max_http_connections,
            max_http_per_ip: config.max_http_connections_per_ip,
            max_websockets: config.max_connections,
            upgrades_per_sec: config.upgrades_per_ip_per_sec,
            http_open: AtomicUsize::new(0),
            http_per_ip: DashMap::new(),
            websockets_open: AtomicUsize::new(0),
            upgrades: DashMap::new(),
        }
    }

    /// Admits a new TCP connection from `ip` to the HTTP phase, or says which cap it hit.
    pub fn admit_http(self: &Arc<Self>, ip: IpAddr) -> Result<HttpPermit, Refusal> {
        if !take_slot(&self.http_open, self.max_http) {
            return Err(Refusal::HttpConnections.count());
        }
        let ip = client_key(ip);
        if self.max_http_per_ip > 0 {
            let mut held = self.http_per_ip.entry(ip).or_insert(0);
            if *held >= self.max_http_per_ip {
                drop(held);
                self.http_open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::HttpConnectionsPerIp.count());
            }
            *held += 1;
        }
        Ok(HttpPermit {
            admission: self.clone(),
            ip,
        })
    }

    /// Admits a WebSocket upgrade from `ip` (when known) at `now_ms`: the per-address rate first,
    /// then the cap on open WebSockets.
    pub fn admit_websocket(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<WsPermit, Refusal> {
        if let Some(ip) = ip.filter(|_| self.upgrades_per_sec > 0.0) {
            let burst = self.upgrades_per_sec.ceil().min(f64::from(u32::MAX)) as u32;
            let mut entry = self
                .upgrades
                .entry(client_key(ip))
                .or_insert_with(|| (TokenBucket::full(burst, now_ms), now_ms));
            entry.1 = now_ms;
            if let Err(wait_ms) = entry.0.try_take(now_ms, burst, self.upgrades_per_sec) {
                return Err(Refusal::UpgradeRate(wait_ms).count());
            }
        }
        if !take_slot(&self.websockets_open, self.max_websockets) {
            return Err(Refusal::WebSockets.count());
        }
        Ok(WsPermit {
            admission: self.clone(),
        })
    }

    /// TCP connections in the HTTP phase now.
    pub fn http_connections(&self) -> usize {
        self.http_open.load(Ordering::Acquire)
    }

    /// WebSockets admitted and not yet ended.
    pub fn websockets(&self) -> usize {
        self.websockets_open.load(Ordering::Acquire)
    }

    /// Forgets upgrade allowances unused for `idle_ms` (a full bucket needs no memory), so the
    /// map is bounded by the addresses that upgraded recently.
    pub fn forget_idle(&self, now_ms: i64, idle_ms: i64) {
        self.upgrades
            .retain(|_, (_, last)| now_ms - *last < idle_ms);
    }
}

/// One TCP connection in the HTTP phase; gives its slots back when dropped (the connection ended
/// or was upgraded).
pub struct HttpPermit {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for HttpPermit {
    fn drop(&mut self) {
        let a = &self.admission;
        a.http_open.fetch_sub(1, Ordering::AcqRel);
        if a.max_http_per_ip > 0
            && let Entry::Occupied(mut held) = a.http_per_ip.entry(self.ip)
        {
            *held.get_mut() -= 1;
            if *held.get() == 0 {
                held.remove();
            }
        }
    }
}

/// One admitted WebSocket; gives its slot back when dropped (the connection ended, or the
/// upgrade was refused after admission).
pub struct WsPermit {
    admission: Arc<Admission>,
}

impl Drop for WsPermit {
    fn drop(&mut self) {
        self.admission
            .websockets_open
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes one slot of `open` unless `max` are taken.
fn take_slot(open: &AtomicUsize, max: usize) -> bool {
    open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        (n < max).then_some(n + 1)
    })
    .is_ok()
}

/// The key a client address is counted under: IPv4 as is (also when mapped into IPv6), IPv6 by
/// its /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn admission(args: &[&str]) -> Arc<Admission> {
        let mut all = vec!["liveshop"];
        all.extend_from_slice(args);
        Arc::new(Admission::new(&Cli::parse_from(all).config))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn http_connections_are_capped_per_address_and_in_all() {
        let a = admission(&[
            "--max-http-connections",
            "3",
            "--max-http-connections-per-ip",
            "2",
        ]);
        let first = a.admit_http(ip("10.0.0.1")).unwrap();
        let _second = a.admit_http(ip("10.0.0.1")).unwrap();
        assert_eq!(
            a.admit_http(ip("10.0.0.1")).err(),
            Some(Refusal::HttpConnectionsPerIp)
        );
        let _third = a.admit_http(ip("10.0.0.2")).unwrap();
        assert_eq!(
            a.admit_http(ip("10.0.0.3")).err(),
            Some(Refusal::HttpConnections)
        );
        assert_eq!(a.http_connections(), 3);
        drop(first);
        assert_eq!(a.http_connections(), 2);
        assert!(a.admit_http(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn an_address_whose_connections_all_ended_is_forgotten() {
        let a = admission(&[]);
        let permit = a.admit_http(ip("10.0.0.9")).unwrap();
        assert_eq!(a.http_per_ip.len(), 1);
        drop(permit);
        assert!(a.http_per_ip.is_empty());
        assert_eq!(a.http_connections(), 0);
    }

    #[test]
    fn upgrades_are_rate_limited_per_address_then_capped_in_all() {
        let a = admission(&["--upgrades-per-ip-per-sec", "2", "--max-connections", "3"]);
        let p1 = a.admit_websocket(Some(ip("10.0.0.1")), 0).unwrap();
        let _p2 = a.admit_websocket(Some(ip("10.0.0.1")), 0).unwrap();
        assert_eq!(
            a.admit_websocket(Some(ip("10.0.0.1")), 0).err(),
            Some(Refusal::UpgradeRate(500))
        );
        let _p3 = a.admit_websocket(Some(ip("10.0.0.2")), 0).unwrap();
        assert_eq!(
            a.admit_websocket(Some(ip("10.0.0.3")), 0).err(),
            Some(Refusal::WebSockets)
        );
        drop(p1);
        assert_eq!(a.websockets(), 2);
        // Half a second later the first address has one upgrade again.
        assert!(a.admit_websocket(Some(ip("10.0.0.1")), 500).is_ok());
        a.forget_idle(100_000, 60_000);
        assert!(a.upgrades.is_empty());
    }

    #[test]
    fn a_rate_of_zero_means_no_rate_limit() {
        let a = admission(&["--upgrades-per-ip-per-sec", "0"]);
        let permits: Vec<_> = (0..1000)
            .map(|_| a.admit_websocket(Some(ip("10.0.0.1")), 0).unwrap())
            .collect();
        assert_eq!(a.websockets(), permits.len());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(client_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(client_key(ip("10.1.2.3")), ip("10.1.2.3"));
    }
}
