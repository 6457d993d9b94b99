//! One module per verb.

pub mod apply;
pub mod completion;
pub mod config_cmd;
pub mod dashboard;
pub mod delete;
pub mod dev;
pub mod diff;
pub mod drain;
pub mod events;
pub mod get;
pub mod logs;
pub mod node;
pub mod node_admin;
pub mod rollout;
pub mod scheduler;
pub mod top;
pub mod version;
