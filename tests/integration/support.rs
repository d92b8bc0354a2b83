//! Stand-ins for the services this one talks to, started by the tests:
//! `otlp`, an OpenTelemetry trace receiver.

pub mod otlp;
