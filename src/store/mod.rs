//! What a run keeps on disk: the failure CSV, the resume journal, the change log, the run
//! locks, the sync state database, and the run's files as a whole (`outputs`: their paths checked against each
//! other, and the report CSVs written whole).

pub mod changes_log;
pub mod failures;
pub mod journal;
pub mod lock;
pub mod outputs;
pub mod state;
