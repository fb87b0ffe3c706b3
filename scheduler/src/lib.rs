//! Zone-aware placement solver for Redis Cluster shards.
