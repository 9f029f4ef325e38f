//! stagebuild: a from-source staged builder. A step's journey:
//! step file → [`plan`] (cache keys) → [`mirror`] (sources) → [`runner`] →
//! [`checkpoint`] → report.

pub mod archive;
pub mod assignment;
pub mod audit;
pub mod beneath;
pub mod book;
pub mod buildtree;
pub mod cache;
pub mod cancel;
pub mod checkpoint;
pub mod cli;
pub mod color;
pub mod commands;
pub mod digest;
pub mod elf;
pub mod engine;
pub mod error;
pub mod faultpoint;
pub mod fsutil;
pub mod lock;
pub mod lockedit;
pub mod logs;
pub mod manifest;
pub mod mirror;
pub mod names;
pub mod opendir;
pub mod outputs;
pub mod plan;
pub mod project;
pub mod qmp;
pub mod record;
pub mod report;
pub mod runner;
pub mod sandbox;
pub mod schema;
pub mod stamps;
pub mod state;
pub mod statefs;
pub mod step;
pub mod target;
pub mod times;
pub mod yaml;
