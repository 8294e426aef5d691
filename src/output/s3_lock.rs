//! The lock of an S3 output prefix: `<prefix>/_cskpi.lock`, created with a
//! conditional put (`If-None-Match: *`), so of two runs starting at once
//! only one gets it. S3 cannot tell that a process died, so the lock is a
//! lease: it names its run and an expiry, the holder renews it well before
//! then (each renewal conditional on the lock still being the one it
//! wrote), and a run that finds an expired lock takes it over with a put
//! conditional on that lock's ETag. A killed run's lock therefore blocks
//! the output for at most one lease.

use std::sync::Arc;
use std::time::Duration;

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
    /// The version this run last wrote: renewals and the release are
    /// conditional on it.
    version: Arc<Mutex<UpdateVersion>>,
    renewing: tokio::task::JoinHandle<()>,
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
        let version = Arc::new(Mutex::new(version));
        let renewing = tokio::spawn(renew(
            store.clone(),
            key.clone(),
            run_id.to_string(),
            lease,
            version.clone(),
        ));
        Ok(Self {
            store,
            key,
            version,
            renewing,
        })
    }

    /// Stops renewing and removes the lock if it is still this run's.
    pub(super) async fn release(&self) {
        // A renewal holds the version while its put is in flight: waiting
        // for it first means no renewal lands after the check below.
        let version = self.version.lock().await;
        self.renewing.abort();
        let ours = version.e_tag.clone();
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
    version: Arc<Mutex<UpdateVersion>>,
) {
    let holder = Holder {
        run_id: &run_id,
        lease,
    };
    loop {
        tokio::time::sleep(lease / 5).await;
        let mut current = version.lock().await;
        match put(
            store.as_ref(),
            &key,
            &holder,
            PutMode::Update(current.clone()),
        )
        .await
        {
            Ok(renewed) => *current = renewed,
            Err(e) => tracing::warn!(lock = %key, error = %e, "could not renew the output's lock"),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
