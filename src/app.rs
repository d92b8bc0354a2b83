//! The one place that builds and runs the service.

pub mod maintenance;
