//! Delta-state CRDTs (work in progress; see the crate docs once the types land).
