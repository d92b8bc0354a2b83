//! End-to-end tests of macp-auth-service, in one test binary so the shared
//! support (and the slow RSA keys it caches) is built once.
//!
//! - `support`: the one home of test plumbing: in-process apps, the spawned
//!   binary, log capture, temporary directories, keys and the runtime's
//!   verifier. New tests use it rather than growing their own.
//!
//! - `contract`: every row of the v1 wire contract, driven in process.
//! - `runtime`: tokens minted over a real socket, verified the way the MACP
//!   runtime does it, for both algorithms and across instances.
//! - `rotation`: the key ring over time: pre-publication, switch, retirement.
//! - `shutdown`: draining in-flight requests and the drain deadline.
//! - `service`: the real `Service` in process: its metrics listener,
//!   maintenance (polling, scheduled activation) and shutdown order.
//! - `process`: the binary itself: startup log, signals, bad configuration.
//! - `commands`: the operator subcommands and key interchange with Node.
//! - `manifests`: the Dockerfile and Kubernetes manifests match the service.
//! - `architecture`: docs/architecture.md has a row for every folder and
//!   module file, and the imports follow its layers.
//! - `openapi`: docs/openapi.yaml and the served routes agree.
//! - `hardening`: credentials, rate limits, audit, metrics, readiness, limits.
//! - `fuzz_regressions`: every fuzz corpus and crash input, replayed with the
//!   fuzz targets' invariants.
//! - `properties`: property tests: the JWKS never leaks private members, any
//!   accepted request mints a token the runtime verifies, and any body gets a
//!   200 or a JSON 4xx.
//! - `callers`: workload-identity clients against a stand-in OIDC issuer,
//!   scope ceilings, and known scope members typed as the runtime reads them.
//! - `custody_pkcs11`, `custody_kms`: signing keys in a PKCS#11 token
//!   (SoftHSM2) and in AWS KMS (moto's server), started by the tests.
//! - `custody_hangs`: a PKCS#11 token that stops answering (a shim over
//!   SoftHSM2): only PKCS#11 work waits for it, and never without a bound.
//! - `drills`: failure drills: SIGTERM under load, 3x overload, 10,000
//!   malformed bodies, and header and body floods against the memory bound.
//! - `faults`: the binary under faults and hostile clients: FIFOs named as
//!   key or client files, revocation by an empty client list, bodies refused
//!   before they are read, and clients that never read their answers.
//! - `traces`: OpenTelemetry traces from the binary to an OTLP receiver
//!   served by the test: the caller's trace continued, the mint and its
//!   signing inside, flushed at shutdown, and minting unaffected when the
//!   collector is down.

mod architecture;
mod callers;
mod commands;
mod contract;
#[cfg(feature = "pkcs11")]
mod custody_hangs;
#[cfg(feature = "aws-kms")]
mod custody_kms;
#[cfg(feature = "pkcs11")]
mod custody_pkcs11;
mod drills;
mod faults;
mod fuzz_regressions;
mod hardening;
mod manifests;
mod openapi;
mod process;
mod properties;
mod rotation;
mod runtime;
mod service;
mod shutdown;
mod support;
mod traces;
