//! What a run keeps on disk: the failure CSV, the resume journal, the run lock and the sync
//! state database.

pub mod failures;
pub mod journal;
pub mod lock;
pub mod state;
