//! What a failed KMS call means to an operator, from error codes and fixed
//! text only: AWS messages can name principals, and credential errors can
//! come from parsing profile files, so neither is ever quoted.

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};

use crate::keys::custody::BackendError;

/// Maps an SDK error to what it means to an operator, from error codes and
/// fixed text only: AWS messages can name principals, and credential
/// errors can come from parsing profile files.
pub(super) fn sdk_error<E>(
    operation: &str,
    reference: &str,
    millis: u64,
    err: &SdkError<E>,
) -> BackendError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match err {
        SdkError::TimeoutError(_) => BackendError::Timeout { millis },
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            BackendError::Timeout { millis }
        }
        SdkError::DispatchFailure(failure) if failure.is_io() => BackendError::Unreachable(
            format!("{operation}: cannot connect to the KMS endpoint"),
        ),
        SdkError::DispatchFailure(_) => match credentials_error(err) {
            Some(CredentialsError::CredentialsNotLoaded(_)) => BackendError::AccessDenied(
                "no AWS credentials found (environment, profile, web identity, container or instance)"
                    .into(),
            ),
            Some(CredentialsError::ProviderTimedOut(_)) => {
                BackendError::Unreachable("the AWS credentials provider timed out".into())
            }
            Some(_) => BackendError::AccessDenied("the AWS credentials provider failed".into()),
            None => BackendError::Unreachable(format!("{operation}: the request could not be sent")),
        },
        SdkError::ServiceError(service) => {
            service_error(operation, reference, service.err().code().unwrap_or("Unknown"))
        }
        SdkError::ResponseError(_) => BackendError::Unreachable(format!(
            "{operation}: the endpoint's response is not a KMS response"
        )),
        _ => BackendError::Failed(format!("{operation}: the request could not be built")),
    }
}

fn service_error(operation: &str, reference: &str, code: &str) -> BackendError {
    let code: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(64)
        .collect();
    match code.as_str() {
        "NotFoundException" => BackendError::NotFound(format!("no KMS key matches {reference}")),
        "AccessDeniedException" => BackendError::AccessDenied(format!(
            "{operation} on {reference} is not allowed (the key policy or IAM policy must allow kms:Sign and kms:GetPublicKey)"
        )),
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "ExpiredTokenException" => {
            BackendError::AccessDenied(format!("AWS rejected the credentials ({code})"))
        }
        "DisabledException" => BackendError::Failed(format!("the KMS key is disabled ({code})")),
        "KMSInvalidStateException" => BackendError::Failed(format!(
            "the KMS key cannot be used in its current state, e.g. pending deletion ({code})"
        )),
        "InvalidKeyUsageException" => {
            BackendError::WrongKey(format!("the KMS key cannot sign this way ({code})"))
        }
        "KeyUnavailableException"
        | "DependencyTimeoutException"
        | "KMSInternalException"
        | "ThrottlingException"
        | "ServiceUnavailable"
        | "InternalFailure" => BackendError::Unreachable(format!("KMS answered {code}")),
        _ => BackendError::Failed(format!("{operation} failed ({code})")),
    }
}

/// The credentials error somewhere in `err`'s source chain, if any.
fn credentials_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a CredentialsError> {
    let mut current = Some(err);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<CredentialsError>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_error_codes_read_as_what_the_operator_must_fix() {
        let cases = [
            (
                "NotFoundException",
                "object not found: no KMS key matches alias/k",
            ),
            (
                "AccessDeniedException",
                "access denied: Sign on alias/k is not allowed (the key policy or IAM policy must allow kms:Sign and kms:GetPublicKey)",
            ),
            (
                "UnrecognizedClientException",
                "access denied: AWS rejected the credentials (UnrecognizedClientException)",
            ),
            (
                "KMSInternalException",
                "unreachable: KMS answered KMSInternalException",
            ),
            (
                "DisabledException",
                "the KMS key is disabled (DisabledException)",
            ),
            ("Weird<script>", "Sign failed (Weirdscript)"),
        ];
        for (code, message) in cases {
            assert_eq!(service_error("Sign", "alias/k", code).to_string(), message);
        }
    }

    #[test]
    fn missing_credentials_are_found_in_the_error_chain() {
        #[derive(Debug)]
        struct Wrapper(Box<dyn StdError + Send + Sync>);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dispatch failure")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(self.0.as_ref())
            }
        }
        let err = CredentialsError::not_loaded("no providers in chain provided credentials");
        let wrapped = Wrapper(Box::new(Wrapper(Box::new(err))));
        assert!(matches!(
            credentials_error(&wrapped),
            Some(CredentialsError::CredentialsNotLoaded(_))
        ));
        assert!(credentials_error(&Wrapper("plain".into())).is_none());
    }
}
