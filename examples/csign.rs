//! A bare `C_Sign` loop in one process: one thread and one logged-in
//! session per core, the module initialised for OS threads
//! (`CKF_OS_LOCKING_OK`) and logged in once, as the service does. It prints
//! the module's own signing rate for a threaded application, the yardstick
//! `scripts/bench.py --softhsm` sets beside the service's PKCS#11 mints
//! (issue 10).
//!
//! ```sh
//! cargo run --release --example csign -- MODULE TOKEN_LABEL OBJECT_LABEL RS256|ES256 SECONDS THREADS
//! ```
//! The user PIN comes from `CSIGN_PIN`. Prints one line:
//! `csign threads=N signatures=M seconds=S rate=R`, or fails if any
//! signature failed (a broken key must not pass for a slow one).

#[cfg(feature = "pkcs11")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::{Attribute, ObjectClass};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;

    let args: Vec<String> = std::env::args().skip(1).collect();
    let [module, token, object, alg, seconds, threads] = args.as_slice() else {
        return Err("usage: csign MODULE TOKEN OBJECT RS256|ES256 SECONDS THREADS".into());
    };
    let pin = std::env::var("CSIGN_PIN").map_err(|_| "set CSIGN_PIN")?;
    let seconds: f64 = seconds.parse()?;
    let threads: usize = threads.parse()?;
    let context = Pkcs11::new(module)?;
    context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = context
        .get_slots_with_token()?
        .into_iter()
        .find(|slot| {
            context
                .get_token_info(*slot)
                .is_ok_and(|info| info.label() == token.as_str())
        })
        .ok_or("no such token")?;
    // One login for the application: it logs every session of the token in.
    let anchor = context.open_ro_session(slot)?;
    anchor.login(UserType::User, Some(&AuthPin::new(pin.into())))?;
    let find = [
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Label(object.as_bytes().to_vec()),
    ];
    let rsa = match alg.as_str() {
        "RS256" => true,
        "ES256" => false,
        _ => return Err("alg must be RS256 or ES256".into()),
    };
    // RS256 signs a signing input of a typical token's size; ES256 a digest.
    let message: Vec<u8> = if rsa { vec![b'x'; 300] } else { vec![7; 32] };
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut started = Instant::now();
    std::thread::scope(|scope| -> Result<(), Box<dyn std::error::Error>> {
        let mut sessions = Vec::with_capacity(threads);
        for _ in 0..threads {
            let session = context.open_ro_session(slot)?;
            let handle = *session.find_objects(&find)?.first().ok_or("no such key")?;
            sessions.push((session, handle));
        }
        // The clock starts once every session is open.
        started = Instant::now();
        for (session, handle) in sessions {
            let (stop, count, failures, message) = (&stop, &count, &failures, &message);
            scope.spawn(move || {
                // Mechanisms hold raw pointers (not Sync): one per thread.
                let mechanism = if rsa {
                    Mechanism::Sha256RsaPkcs
                } else {
                    Mechanism::Ecdsa
                };
                while !stop.load(Ordering::Relaxed) {
                    let counter = match session.sign(&mechanism, handle, message) {
                        Ok(_) => count,
                        Err(_) => failures,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        Ok(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(format!("{failed} C_Sign calls failed").into());
    }
    let signatures = count.load(Ordering::Relaxed);
    println!(
        "csign threads={threads} signatures={signatures} seconds={elapsed:.2} rate={:.1}",
        signatures as f64 / elapsed
    );
    drop(anchor);
    Ok(())
}

#[cfg(not(feature = "pkcs11"))]
fn main() {
    eprintln!("csign needs the pkcs11 feature");
    std::process::exit(2);
}
