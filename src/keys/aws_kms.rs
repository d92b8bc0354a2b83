//! Signing with an asymmetric AWS KMS key.
//!
//! The key never leaves KMS; the service sends it the SHA-256 of the signing
//! input (`MessageType: DIGEST`, so inputs of any size work, where `RAW`
//! stops at 4096 bytes) and gets the signature back: PKCS#1 v1.5 for RS256,
//! DER for ES256, which is converted to the JOSE `r || s`.
//!
//! Three things keep a slow or failing KMS from hurting the rest of the
//! service. Calls are async, so a stalled call holds no thread. Each call
//! (queueing included) has a deadline, `MACP_AUTH_SIGNING_TIMEOUT_MS`, after
//! which it is dropped, which cancels the request. And calls in flight are
//! bounded by a semaphore shared by every KMS key of the process, so a burst
//! queues here instead of opening unbounded connections and spending the
//! account's KMS request quota.
//!
//! A reference is resolved once, at load: `GetPublicKey` answers with the
//! key's ARN, and every `Sign` names that ARN. Re-pointing an alias in AWS
//! therefore never switches the signing key under a published public key;
//! and the next reload, which would find another key under the same kid,
//! is refused (`keys::store`): a new key needs a new kid.
//!
//! In a trace, a signature's `sign` span (the signer's) gets the time spent
//! waiting for the bound on calls in flight (`macp.signer.queue_wait_us`),
//! the time of the call itself (`macp.signer.signature_us`) and a
//! `signature` child around the call, as a signing thread gives them.
//!
//! Region, credentials and endpoint come from the SDK's standard chain
//! (`AWS_REGION`, environment/profile/web identity/container/instance
//! credentials, `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_KMS`). The SSO
//! providers are left out of the build (they pull in `ring`).

mod errors;

use std::error::Error as StdError;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyUsageType, MessageType, SigningAlgorithmSpec};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;
use tracing::Instrument;
use tracing::instrument::WithSubscriber;

use crate::keys::SigningAlg;
use crate::keys::custody::{BackendError, PROBE, PublicKey, ecdsa_der_to_jose, sha256};
use crate::telemetry::TRACE_TARGET;
use errors::sdk_error;

/// Calls to KMS in flight at once, across every KMS key of the process.
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// The longest reference accepted (KMS's own limit on `KeyId`).
const MAX_REFERENCE_LEN: usize = 2048;

/// How much longer than the call deadline a caller waits for the KMS
/// runtime to report, so a wedged runtime cannot hold a caller forever.
const REPORT_GRACE: Duration = Duration::from_millis(250);

/// The process's one KMS client: the SDK client, the bound on calls in
/// flight, and the small runtime every KMS call runs on.
///
/// KMS calls run on their own single-threaded runtime rather than the
/// service's: whatever the SDK does (DNS, credential refresh, a stalled
/// connection) happens there, so it can never occupy a worker that serves
/// `/healthz` or the JWKS; callers only await a handle. It also lets a
/// load-time check block on KMS from any thread, async or not.
pub(crate) struct KmsClient {
    runtime: Runtime,
    client: Client,
    limiter: Semaphore,
    has_region: bool,
}

impl std::fmt::Debug for KmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The SDK client's own Debug lists its configuration; keep it out.
        f.debug_struct("KmsClient").finish_non_exhaustive()
    }
}

impl KmsClient {
    /// The process's client, built on first use from the SDK's standard
    /// chain, whose loading (region and the like, perhaps from instance
    /// metadata) may take at most `timeout`. Nothing is sent until a key is
    /// opened; the service builds no client at all unless a ring member
    /// names `aws_kms`.
    pub(crate) fn shared(timeout: Duration) -> Result<Arc<KmsClient>, BackendError> {
        static SHARED: Mutex<Option<Arc<KmsClient>>> = Mutex::new(None);
        let mut shared = SHARED.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(client) = shared.as_ref() {
            return Ok(client.clone());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("macp-kms")
            .enable_all()
            .build()
            .map_err(|err| BackendError::Failed(format!("cannot start the KMS runtime: {err}")))?;
        let loader = aws_config::defaults(BehaviorVersion::latest()).load();
        let Some(config) = wait(runtime.handle(), loader, timeout) else {
            // Dropping a runtime where blocking is not allowed (an async
            // worker, at startup) panics; this one is let go instead.
            runtime.shutdown_background();
            return Err(BackendError::Unreachable(format!(
                "the AWS configuration (region, credentials providers) did not load within {} ms",
                millis(timeout)
            )));
        };
        let client = Arc::new(KmsClient {
            has_region: config.region().is_some(),
            client: Client::new(&config),
            limiter: Semaphore::new(MAX_IN_FLIGHT),
            runtime,
        });
        *shared = Some(client.clone());
        Ok(client)
    }

    /// Runs one KMS call under the process-wide bound and `deadline`
    /// (queueing for the bound included). When `trace` (a `sign` span) is
    /// recorded, it gets the wait for the bound and the call's time, and
    /// the call runs in a `signature` child of it.
    async fn call<T, E>(
        &self,
        operation: &str,
        reference: &str,
        deadline: Duration,
        request: impl Future<Output = Result<T, SdkError<E>>>,
        trace: &tracing::Span,
    ) -> Result<T, BackendError>
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let millis = millis(deadline);
        let bounded = async {
            let queued = Instant::now();
            let _permit = self.limiter.acquire().await;
            if trace.is_disabled() {
                return request.await;
            }
            let started = Instant::now();
            let waited = started.duration_since(queued);
            // As i64: the trace layer records u64 values as strings.
            trace.record("macp.signer.queue_wait_us", waited.as_micros() as i64);
            let signature = tracing::info_span!(target: TRACE_TARGET, parent: trace, "signature");
            let output = request.instrument(signature).await;
            let took = started.elapsed();
            trace.record("macp.signer.signature_us", took.as_micros() as i64);
            output
        };
        match tokio::time::timeout(deadline, bounded).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(err)) => Err(sdk_error(operation, reference, millis, &err)),
            Err(_) => Err(BackendError::Timeout { millis }),
        }
    }
}

/// Runs `future` on `handle` and blocks the calling thread for its output,
/// at most `limit`. Works from inside another runtime's worker, where
/// `block_on` would panic.
fn wait<T: Send + 'static>(
    handle: &Handle,
    future: impl Future<Output = T> + Send + 'static,
    limit: Duration,
) -> Option<T> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver.recv_timeout(limit).ok()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// An asymmetric KMS key, resolved to its ARN, ready to sign.
#[derive(Debug, Clone)]
pub(crate) struct KmsKey {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Arc<KmsClient>,
    reference: String,
    key_arn: String,
    alg: SigningAlg,
    public: PublicKey,
    timeout: Duration,
}

impl KmsKey {
    /// [`KmsKey::open`] from any thread, blocking it until KMS answers.
    pub(crate) fn open_blocking(
        client: Arc<KmsClient>,
        reference: &str,
        alg: SigningAlg,
        timeout: Duration,
    ) -> Result<Self, BackendError> {
        let handle = client.runtime.handle().clone();
        let open = Self::open(client, reference.to_owned(), alg, timeout);
        // Two calls (GetPublicKey, the probe's Sign), each under `timeout`.
        wait(&handle, open, 2 * timeout + REPORT_GRACE).unwrap_or(Err(BackendError::Timeout {
            millis: millis(2 * timeout),
        }))
    }

    /// Resolves `reference` (key ID, key ARN, `alias/NAME` or alias ARN),
    /// reads its public key, checks it is a SIGN_VERIFY key that suits `alg`,
    /// and has KMS sign a probe that must verify with that public key.
    async fn open(
        client: Arc<KmsClient>,
        reference: String,
        alg: SigningAlg,
        timeout: Duration,
    ) -> Result<Self, BackendError> {
        check_reference(&reference)?;
        if !client.has_region {
            return Err(BackendError::BadReference(
                "no AWS region: set AWS_REGION (or a region in the AWS profile)".into(),
            ));
        }
        let request = client.client.get_public_key().key_id(&reference).send();
        let untraced = tracing::Span::none();
        let output = client
            .call("GetPublicKey", &reference, timeout, request, &untraced)
            .await?;
        if output.key_usage() != Some(&KeyUsageType::SignVerify) {
            return Err(BackendError::WrongKey(format!(
                "the KMS key's usage is {}; it must be SIGN_VERIFY",
                output.key_usage().map_or("unknown", |usage| usage.as_str())
            )));
        }
        let der = output
            .public_key()
            .ok_or_else(|| BackendError::Failed("GetPublicKey returned no public key".into()))?;
        let public = PublicKey::from_spki_der(der.as_ref())?;
        public.check_alg(alg)?;
        if !output
            .signing_algorithms()
            .contains(&signing_algorithm(alg))
        {
            return Err(BackendError::WrongKey(format!(
                "the KMS key does not offer {}",
                signing_algorithm(alg).as_str()
            )));
        }
        let inner = Inner {
            key_arn: output.key_id().unwrap_or(&reference).to_owned(),
            client,
            reference,
            alg,
            public,
            timeout,
        };
        let signature = inner.sign_digest(sha256(PROBE), &untraced).await?;
        inner.public.check_probe(alg, &signature)?;
        Ok(KmsKey {
            inner: Arc::new(inner),
        })
    }

    /// The public key KMS returned.
    pub(crate) fn public_key(&self) -> &PublicKey {
        &self.inner.public
    }

    /// The reference as configured, and the key ARN it resolved to.
    pub(crate) fn description(&self) -> String {
        let inner = &self.inner;
        if inner.reference == inner.key_arn {
            inner.reference.clone()
        } else {
            format!("{} ({})", inner.reference, inner.key_arn)
        }
    }

    /// Signs `message` (the JWS signing input) through KMS: PKCS#1 v1.5 for
    /// RS256, `r || s` for ES256. The call runs on the KMS runtime, traced
    /// under `trace` (the signer's `sign` span) with `trace`'s own
    /// subscriber; this future only waits for it, at most the deadline.
    pub(crate) async fn sign(
        &self,
        message: &[u8],
        trace: &tracing::Span,
    ) -> Result<Vec<u8>, BackendError> {
        let digest = sha256(message);
        let inner = self.inner.clone();
        let trace = trace.clone();
        let dispatch = tracing::Span::with_subscriber(&trace, |(_, dispatch)| dispatch.clone());
        let signing = async move { inner.sign_digest(digest, &trace).await };
        let runtime = &self.inner.client.runtime;
        let task = match dispatch {
            Some(dispatch) => runtime.spawn(WithSubscriber::with_subscriber(signing, dispatch)),
            None => runtime.spawn(signing),
        };
        match tokio::time::timeout(self.inner.timeout + REPORT_GRACE, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(BackendError::Failed("the KMS call was aborted".into())),
            Err(_) => Err(BackendError::Timeout {
                millis: millis(self.inner.timeout),
            }),
        }
    }

    /// [`KmsKey::sign`], blocking the calling thread.
    pub(crate) fn sign_blocking(&self, message: &[u8]) -> Result<Vec<u8>, BackendError> {
        let digest = sha256(message);
        let inner = self.inner.clone();
        let limit = self.inner.timeout + REPORT_GRACE;
        wait(
            self.inner.client.runtime.handle(),
            async move { inner.sign_digest(digest, &tracing::Span::none()).await },
            limit,
        )
        .unwrap_or(Err(BackendError::Timeout {
            millis: millis(self.inner.timeout),
        }))
    }
}

impl Inner {
    /// One `Sign` call with `MessageType: DIGEST`, traced under `trace`
    /// when it is recorded; the signature in JOSE form.
    async fn sign_digest(
        &self,
        digest: [u8; 32],
        trace: &tracing::Span,
    ) -> Result<Vec<u8>, BackendError> {
        let request = self
            .client
            .client
            .sign()
            .key_id(&self.key_arn)
            .message(Blob::new(digest.to_vec()))
            .message_type(MessageType::Digest)
            .signing_algorithm(signing_algorithm(self.alg))
            .send();
        let output = self
            .client
            .call("Sign", &self.reference, self.timeout, request, trace)
            .await?;
        let signature = output
            .signature()
            .ok_or_else(|| BackendError::Failed("Sign returned no signature".into()))?
            .as_ref();
        match (&self.public, self.alg) {
            (PublicKey::Rsa { n, .. }, SigningAlg::Rs256) if signature.len() == n.len() => {
                Ok(signature.to_vec())
            }
            (PublicKey::P256 { .. }, SigningAlg::Es256) => ecdsa_der_to_jose(signature)
                .map(|jose| jose.to_vec())
                .ok_or_else(|| {
                    BackendError::Failed("Sign returned a malformed ECDSA signature".into())
                }),
            _ => Err(BackendError::Failed(format!(
                "Sign returned a {}-byte signature, not one the key's size",
                signature.len()
            ))),
        }
    }
}

fn signing_algorithm(alg: SigningAlg) -> SigningAlgorithmSpec {
    match alg {
        SigningAlg::Rs256 => SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        SigningAlg::Es256 => SigningAlgorithmSpec::EcdsaSha256,
    }
}

/// Accepts the four forms KMS takes for an asymmetric key: key ID
/// (`1234abcd-…` or `mrk-…`), key ARN, `alias/NAME`, alias ARN.
pub(crate) fn check_reference(reference: &str) -> Result<(), BackendError> {
    let bad = || {
        BackendError::BadReference(
            "an aws_kms reference must be a key ID, a key ARN, alias/NAME or an alias ARN".into(),
        )
    };
    if reference.is_empty()
        || reference.len() > MAX_REFERENCE_LEN
        || !reference.bytes().all(|byte| byte.is_ascii_graphic())
    {
        return Err(bad());
    }
    let key_id = |id: &str| {
        let hex = id
            .strip_prefix("mrk-")
            .map_or(id.len() == 36, |rest| rest.len() == 32);
        hex && id
            .trim_start_matches("mrk-")
            .bytes()
            .all(|byte| byte.is_ascii_hexdigit() || byte == b'-')
    };
    let valid = if let Some(name) = reference.strip_prefix("alias/") {
        !name.is_empty()
    } else if let Some(arn) = reference.strip_prefix("arn:") {
        // arn:PARTITION:kms:REGION:ACCOUNT:key/ID or :alias/NAME
        let parts: Vec<&str> = arn.splitn(5, ':').collect();
        parts.len() == 5
            && parts[1] == "kms"
            && match parts[4].split_once('/') {
                Some(("key", id)) => key_id(id),
                Some(("alias", name)) => !name.is_empty(),
                _ => false,
            }
    } else {
        key_id(reference)
    };
    if valid { Ok(()) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_reference_forms_are_accepted() {
        for reference in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/macp-signing",
            "arn:aws:kms:us-east-2:111122223333:alias/macp-signing",
            "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        ] {
            check_reference(reference).unwrap_or_else(|err| panic!("{reference}: {err}"));
        }
    }

    #[test]
    fn other_references_are_refused() {
        for reference in [
            "",
            "alias/",
            "my key",
            "1234",
            "arn:aws:s3:::bucket",
            "arn:aws:kms:us-east-2:111122223333:grant/abc",
            "arn:aws:kms:us-east-2:111122223333:key/",
            "pkcs11:object=k",
        ] {
            let err = check_reference(reference).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid reference: "),
                "{reference}: {err}"
            );
        }
    }
}
