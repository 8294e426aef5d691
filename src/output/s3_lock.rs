//! The lock of an S3 output prefix: `<prefix>/_cskpi.lock`, created with a
//! conditional put (`If-None-Match: *`), so of two runs starting at once
//! only one gets it. S3 cannot tell that a process died, so the lock is a
//! lease: it names its run and an expiry, the holder renews it well before
//! then (each renewal conditional on the lock still being the one it
//! wrote), and a run that finds an expired lock takes it over with a put
//! conditional on that lock's ETag. A killed run's lock therefore blocks
//! the output for at most one lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::{OutputError, store_error};

pub(super) const LOCK: &str = "_cskpi.lock";

#[derive(Debug, Serialize, Deserialize)]
struct LockText {
    run_id: String,
    host: String,
    pid: u32,
    expires_at: chrono::DateTime<Utc>,
}

pub(super) struct S3Lock {
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    output: String,
    lease: Duration,
    /// The lock as this run last wrote it; `None` once it is lost (another
    /// run's lock is there).
    held: Arc<Mutex<Option<Held>>>,
    renewing: tokio::task::JoinHandle<()>,
}

/// The version this run last wrote (renewals and the release are
/// conditional on it) and when.
struct Held {
    version: UpdateVersion,
    renewed_at: Instant,
}

/// What the lock object says.
struct Holder<'a> {
    run_id: &'a str,
    lease: Duration,
}

impl S3Lock {
    /// Takes the lock of `key` for `run_id`, or says who holds it.
    pub(super) async fn take(
        store: Arc<dyn ObjectStore>,
        key: ObjectPath,
        output: &str,
        run_id: &str,
        lease: Duration,
    ) -> Result<Self, OutputError> {
        let holder = Holder { run_id, lease };
        let version = match put(store.as_ref(), &key, &holder, PutMode::Create).await {
            Ok(version) => version,
            Err(object_store::Error::AlreadyExists { .. }) => {
                take_over_expired(store.as_ref(), &key, output, &holder).await?
            }
            Err(e) => return Err(store_error(key.as_ref())(e)),
        };
        let held = Arc::new(Mutex::new(Some(Held {
            version,
            renewed_at: Instant::now(),
        })));
        let renewing = tokio::spawn(renew(
            store.clone(),
            key.clone(),
            run_id.to_string(),
            lease,
            held.clone(),
        ));
        Ok(Self {
            store,
            key,
            output: output.to_string(),
            lease,
            held,
            renewing,
        })
    }

    /// Fails unless the lock is this run's and renewed within its lease.
    pub(super) async fn ensure_held(&self) -> Result<(), OutputError> {
        match &*self.held.lock().await {
            Some(held) if held.renewed_at.elapsed() < self.lease => Ok(()),
            _ => Err(OutputError::LockLost {
                path: self.output.clone(),
                lock: self.key.to_string(),
            }),
        }
    }

    /// Stops renewing and removes the lock if it is still this run's.
    pub(super) async fn release(&self) {
        // A renewal holds the lock state while its put is in flight:
        // waiting for it first means no renewal lands after the check below.
        let held = self.held.lock().await;
        self.renewing.abort();
        let Some(held) = &*held else { return };
        let ours = held.version.e_tag.clone();
        let current = self.store.head(&self.key).await.ok().and_then(|m| m.e_tag);
        if ours.is_some()
            && current == ours
            && let Err(e) = self.store.delete(&self.key).await
        {
            tracing::warn!(lock = %self.key, error = %e, "could not remove the output's lock; it expires with its lease");
        }
    }
}

impl Drop for S3Lock {
    fn drop(&mut self) {
        self.renewing.abort();
    }
}

async fn put(
    store: &dyn ObjectStore,
    key: &ObjectPath,
    holder: &Holder<'_>,
    mode: PutMode,
) -> Result<UpdateVersion, object_store::Error> {
    let text = LockText {
        run_id: holder.run_id.to_string(),
        host: hostname(),
        pid: std::process::id(),
        expires_at: Utc::now() + chrono::Duration::from_std(holder.lease).expect("lease fits"),
    };
    let payload = PutPayload::from(serde_json::to_vec_pretty(&text).expect("lock serialises"));
    let done = store
        .put_opts(
            key,
            payload,
            PutOptions {
                mode,
                ..Default::default()
            },
        )
        .await?;
    Ok(UpdateVersion {
        e_tag: done.e_tag,
        version: done.version,
    })
}

/// The lock exists: refused while its lease runs, taken over (conditional
/// on it being unchanged) once it has expired.
async fn take_over_expired(
    store: &dyn ObjectStore,
    key: &ObjectPath,
    output: &str,
    holder: &Holder<'_>,
) -> Result<UpdateVersion, OutputError> {
    let found = store.get(key).await.map_err(store_error(key.as_ref()))?;
    let e_tag = found.meta.e_tag.clone();
    let bytes = found.bytes().await.map_err(store_error(key.as_ref()))?;
    let held: Option<LockText> = serde_json::from_slice(&bytes).ok();
    let refused = |holder: String, until: String| OutputError::LockedOnS3 {
        path: output.to_string(),
        lock: key.to_string(),
        holder,
        until,
    };
    if let Some(held) = &held
        && held.expires_at > Utc::now()
    {
        return Err(refused(
            format!("{} (pid {} on {})", held.run_id, held.pid, held.host),
            held.expires_at.to_rfc3339(),
        ));
    }
    tracing::warn!(lock = %key, previous = ?held, "taking over an expired lock (its run died)");
    let mode = PutMode::Update(UpdateVersion {
        e_tag,
        version: None,
    });
    match put(store, key, holder, mode).await {
        Ok(version) => Ok(version),
        Err(object_store::Error::Precondition { .. }) => Err(refused(
            "another run that took it over just now".into(),
            "its lease ends".into(),
        )),
        Err(e) => Err(store_error(key.as_ref())(e)),
    }
}

async fn renew(
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    run_id: String,
    lease: Duration,
    held: Arc<Mutex<Option<Held>>>,
) {
    let holder = Holder {
        run_id: &run_id,
        lease,
    };
    loop {
        tokio::time::sleep(lease / 5).await;
        let mut state = held.lock().await;
        let Some(current) = state.as_mut() else {
            return;
        };
        let mode = PutMode::Update(current.version.clone());
        match put(store.as_ref(), &key, &holder, mode).await {
            Ok(renewed) => {
                current.version = renewed;
                current.renewed_at = Instant::now();
            }
            // The lock changed: our own renewal whose answer was lost, or
            // another run's lock after ours expired.
            Err(object_store::Error::Precondition { .. }) => {
                match ours_now(store.as_ref(), &key, &run_id).await {
                    Some(version) => {
                        current.version = version;
                        current.renewed_at = Instant::now();
                    }
                    None => {
                        tracing::error!(lock = %key, "the output's lock is another run's now");
                        *state = None;
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(lock = %key, error = %e, "could not renew the output's lock"),
        }
    }
}

/// The lock's version if the lock is this process's run's.
async fn ours_now(
    store: &dyn ObjectStore,
    key: &ObjectPath,
    run_id: &str,
) -> Option<UpdateVersion> {
    let found = store.get(key).await.ok()?;
    let e_tag = found.meta.e_tag.clone();
    let text: LockText = serde_json::from_slice(&found.bytes().await.ok()?).ok()?;
    (text.run_id == run_id && text.pid == std::process::id()).then_some(UpdateVersion {
        e_tag,
        version: None,
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
