//! stagebuild: a from-source staged builder. A step's journey:
//! step file → [`plan`] (cache keys) → [`mirror`] (sources) → [`runner`] →
//! [`checkpoint`] → report.

pub mod archive;
pub mod audit;
pub mod beneath;
pub mod buildtree;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod digest;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod lock;
pub mod manifest;
pub mod mirror;
pub mod opendir;
pub mod outputs;
pub mod plan;
pub mod project;
pub mod qmp;
pub mod report;
pub mod runner;
pub mod sandbox;
pub mod state;
pub mod step;
pub mod target;
pub mod yaml;
