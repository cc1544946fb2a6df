//! Where the node's state lives, and who the node is when its data directory is new: the
//! two choices that the store (issue 7) and automatic identity (issue 17) will replace,
//! each kept in one function.

use std::path::Path;

use confluo_node::{MemoryStorage, NodeId, ReplicaId};

use crate::error::ServerError;

/// The storage the server runs its node on.
///
/// Until `confluo-store` is on main this is [`MemoryStorage`]: a server keeps every write in
/// memory, durable only as long as the process lives, and a restart starts empty.
pub(crate) type NodeStorage = MemoryStorage;

/// Opens (creating it if needed) the node's storage in `data_dir`.
pub(crate) fn open(data_dir: &Path) -> Result<NodeStorage, ServerError> {
    std::fs::create_dir_all(data_dir).map_err(|source| ServerError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    Ok(MemoryStorage::new())
}

/// The replica id of a node whose data directory is new: its node id. A restored node keeps
/// the id its storage names.
pub(crate) fn replica_for_new_node(node: NodeId) -> ReplicaId {
    ReplicaId(node.0)
}
