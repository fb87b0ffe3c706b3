//! A small cluster-aware data client for tests and the benchmark: routes keys by slot,
//! follows MOVED and ASK, retries TRYAGAIN/CLUSTERDOWN, and bulk-loads with pipelines.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use redis_operator::redis::client::Frame;
use redis_operator::redis::command::Cmd;
use redis_operator::redis::parse::cluster_nodes::parse_cluster_nodes;
use redis_operator::redis::{AdminOptions, Client, RedisError, SLOT_COUNT, reply};

/// Routes commands to slot owners.
pub struct DataClient {
    options: AdminOptions,
    seeds: Vec<SocketAddr>,
    conns: HashMap<SocketAddr, Client>,
    slots: Vec<Option<SocketAddr>>,
}

fn parse_endpoint(endpoint: &str) -> Option<SocketAddr> {
    endpoint.parse().ok()
}

impl DataClient {
    /// Connects and loads the slot map from the first seed that answers.
    pub async fn new(seeds: Vec<SocketAddr>, options: AdminOptions) -> Self {
        let mut client = Self {
            options,
            seeds,
            conns: HashMap::new(),
            slots: vec![None; usize::from(SLOT_COUNT)],
        };
        client.refresh().await;
        client
    }

    /// Reloads the slot map.
    pub async fn refresh(&mut self) {
        for seed in self.seeds.clone() {
            let Ok(conn) = self.conn(seed).await else {
                continue;
            };
            let cmd = Cmd::cluster("NODES");
            let Ok(frame) = conn.call(&cmd).await else {
                self.conns.remove(&seed);
                continue;
            };
            let Ok(text) = reply::text(&cmd, frame) else {
                continue;
            };
            let Ok(entries) = parse_cluster_nodes(&text) else {
                continue;
            };
            for e in entries.iter().filter(|e| e.is_master()) {
                for r in &e.slots {
                    for s in r.slots() {
                        self.slots[usize::from(s)] = e.addr;
                    }
                }
            }
            return;
        }
    }

    async fn conn(&mut self, addr: SocketAddr) -> Result<&mut Client, RedisError> {
        if self.conns.get(&addr).is_none_or(Client::is_poisoned) {
            let c = Client::connect(addr, &self.options).await?;
            self.conns.insert(addr, c);
        }
        self.conns.get_mut(&addr).ok_or(RedisError::Closed { addr })
    }

    fn owner(&self, key: &[u8]) -> Option<SocketAddr> {
        let slot = redis_protocol::redis_keyslot(key);
        self.slots[usize::from(slot)].or_else(|| self.seeds.first().copied())
    }

    /// Runs a single-key command, following redirects. Errors that remain after retries are
    /// returned (the write is then indeterminate).
    pub async fn run(&mut self, key: &[u8], cmd: &Cmd) -> Result<Frame, RedisError> {
        let mut target = self.owner(key);
        let mut asking = false;
        let mut last = RedisError::Closed {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        for _ in 0..30 {
            let Some(addr) = target else {
                self.refresh().await;
                target = self.owner(key);
                continue;
            };
            let conn = match self.conn(addr).await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    self.refresh().await;
                    target = self.owner(key);
                    continue;
                }
            };
            let result = if asking {
                asking = false;
                match conn.pipeline(&[Cmd::new("ASKING"), cmd.clone()]).await {
                    Ok(mut replies) => replies.pop().unwrap_or(Err(RedisError::Closed { addr })),
                    Err(e) => Err(e),
                }
            } else {
                conn.call(cmd).await
            };
            match result {
                Ok(frame) => return Ok(frame),
                Err(RedisError::Moved { slot, endpoint }) => {
                    let to = parse_endpoint(&endpoint);
                    self.slots[usize::from(slot)] = to;
                    target = to;
                }
                Err(RedisError::Ask { endpoint, .. }) => {
                    target = parse_endpoint(&endpoint);
                    asking = true;
                }
                Err(e @ (RedisError::TryAgain(_) | RedisError::ClusterDown(_))) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) if e.is_transient() => {
                    last = e;
                    self.conns.remove(&addr);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// `SET key value`.
    pub async fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), RedisError> {
        let cmd = Cmd::new("SET").arg(key).arg(value);
        let frame = self.run(key, &cmd).await?;
        reply::ok(&cmd, frame)
    }

    /// `GET key`.
    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, RedisError> {
        let cmd = Cmd::new("GET").arg(key);
        let frame = self.run(key, &cmd).await?;
        reply::opt_bytes(&cmd, frame)
    }

    /// Loads key/value pairs with pipelines of `chunk` commands per node; keys whose
    /// pipelined SET was redirected are retried one by one.
    pub async fn load(&mut self, pairs: &[(Bytes, Bytes)], chunk: usize) -> Result<(), RedisError> {
        let mut by_node: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
        for (i, (k, _)) in pairs.iter().enumerate() {
            if let Some(addr) = self.owner(k) {
                by_node.entry(addr).or_default().push(i);
            }
        }
        let mut retry = Vec::new();
        for (addr, idx) in by_node {
            for part in idx.chunks(chunk.max(1)) {
                let cmds: Vec<Cmd> = part
                    .iter()
                    .map(|i| {
                        Cmd::new("SET")
                            .arg_bytes(pairs[*i].0.clone())
                            .arg_bytes(pairs[*i].1.clone())
                    })
                    .collect();
                let conn = self.conn(addr).await?;
                let replies = conn.pipeline(&cmds).await?;
                for (i, r) in part.iter().zip(replies) {
                    if r.is_err() {
                        retry.push(*i);
                    }
                }
            }
        }
        for i in retry {
            self.set(&pairs[i].0, &pairs[i].1).await?;
        }
        Ok(())
    }

    /// Reads many keys with pipelines (following redirects per key where needed) and returns
    /// the values in order.
    pub async fn get_many(
        &mut self,
        keys: &[Bytes],
        chunk: usize,
    ) -> Result<Vec<Option<Bytes>>, RedisError> {
        let mut out: Vec<Option<Option<Bytes>>> = vec![None; keys.len()];
        let mut by_node: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if let Some(addr) = self.owner(k) {
                by_node.entry(addr).or_default().push(i);
            }
        }
        for (addr, idx) in by_node {
            for part in idx.chunks(chunk.max(1)) {
                let cmds: Vec<Cmd> = part
                    .iter()
                    .map(|i| Cmd::new("GET").arg_bytes(keys[*i].clone()))
                    .collect();
                let conn = self.conn(addr).await?;
                let replies = conn.pipeline(&cmds).await?;
                for ((i, cmd), r) in part.iter().zip(&cmds).zip(replies) {
                    if let Ok(frame) = r {
                        out[*i] = Some(reply::opt_bytes(cmd, frame)?);
                    }
                }
            }
        }
        let mut values = Vec::with_capacity(keys.len());
        for (i, v) in out.into_iter().enumerate() {
            values.push(match v {
                Some(v) => v,
                None => self.get(&keys[i]).await?,
            });
        }
        Ok(values)
    }

    /// Runs one command per key with pipelines of `chunk` commands per node (the key routes
    /// it); a command whose pipelined reply was an error (a redirect) is run again one by one.
    /// Returns the replies in order.
    pub async fn run_many(
        &mut self,
        cmds: &[(Bytes, Cmd)],
        chunk: usize,
    ) -> Result<Vec<Frame>, RedisError> {
        let mut out: Vec<Option<Frame>> = vec![None; cmds.len()];
        let mut by_node: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
        for (i, (k, _)) in cmds.iter().enumerate() {
            if let Some(addr) = self.owner(k) {
                by_node.entry(addr).or_default().push(i);
            }
        }
        for (addr, idx) in by_node {
            for part in idx.chunks(chunk.max(1)) {
                let batch: Vec<Cmd> = part.iter().map(|i| cmds[*i].1.clone()).collect();
                let conn = self.conn(addr).await?;
                let replies = conn.pipeline(&batch).await?;
                for (i, r) in part.iter().zip(replies) {
                    if let Ok(frame) = r {
                        out[*i] = Some(frame);
                    }
                }
            }
        }
        let mut frames = Vec::with_capacity(cmds.len());
        for (i, f) in out.into_iter().enumerate() {
            frames.push(match f {
                Some(f) => f,
                None => self.run(&cmds[i].0, &cmds[i].1).await?,
            });
        }
        Ok(frames)
    }
}

/// A count from the environment (a benchmark's size), `default` when unset or not a number.
pub fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The benchmarks' data set: `small` keys `key:<i>` = `<i>` in 16 digits, and `big` values
/// `big:<i>` of 1 MiB (each one distinct).
pub fn bench_dataset(small: usize, big: usize) -> Vec<(Bytes, Bytes)> {
    let mut out = Vec::with_capacity(small + big);
    for i in 0..small {
        out.push((
            Bytes::from(format!("key:{i}")),
            Bytes::from(format!("{i:016}")),
        ));
    }
    for i in 0..big {
        let mut v = vec![b'a' + (i % 26) as u8; 1024 * 1024];
        v[..8].copy_from_slice(&(i as u64).to_be_bytes());
        out.push((Bytes::from(format!("big:{i}")), Bytes::from(v)));
    }
    out
}
