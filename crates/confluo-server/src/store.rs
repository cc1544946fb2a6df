//! Where the node's state lives.

use std::path::Path;

use confluo_node::{NodeId, Value};
use confluo_store::Store;

use crate::error::ServerError;

/// The storage the server runs its node on: `confluo-store` (redb) in the data directory,
/// one fsync per group commit. A restart on the same directory restores every write this
/// node acknowledged, and the node's identity with it.
pub(crate) type NodeStorage = Store<Value>;

/// Opens (creating it if needed) the store of node `node` in `data_dir`.
pub(crate) fn open(data_dir: &Path, node: NodeId) -> Result<NodeStorage, ServerError> {
    std::fs::create_dir_all(data_dir).map_err(|source| ServerError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    Store::open(data_dir, node).map_err(ServerError::Store)
}
