//! Where the node's state lives.

use std::path::Path;

use confluo_node::{NodeId, Value};
use confluo_store::{Store, StoreOptions};

use crate::config::StorageConfig;
use crate::error::ServerError;

/// The storage the server runs its node on: `confluo-store` (redb) in the data directory,
/// one fsync per group commit. A restart on the same directory restores every write this
/// node acknowledged, and the node's identity with it.
pub(crate) type NodeStorage = Store<Value>;

/// Opens (creating it if needed) the store of node `node` in `data_dir`.
pub(crate) fn open(
    data_dir: &Path,
    node: NodeId,
    config: StorageConfig,
) -> Result<NodeStorage, ServerError> {
    std::fs::create_dir_all(data_dir).map_err(|source| ServerError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let options = StoreOptions::default()
        .checkpoint_bytes(config.checkpoint_bytes)
        .cache_bytes(config.cache_bytes);
    Store::open_with(data_dir, node, options).map_err(ServerError::Store)
}
