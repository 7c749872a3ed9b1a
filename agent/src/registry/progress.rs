//! Push progress shared with the API's status: atomics written by the push, read at any time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Counters of one push, reset when the next push starts. Blobs are counted once per digest
/// (configs and layers), however many repositories need them; bytes are those blobs' sizes.
#[derive(Debug, Default)]
pub struct PushProgress {
    running: AtomicBool,
    /// Bytes of every distinct config and layer blob.
    pub bytes_total: AtomicU64,
    /// Bytes of blobs found present, mounted, or read into an upload so far.
    pub bytes_done: AtomicU64,
    /// Bytes actually sent to the registry (the rate's numerator).
    pub bytes_uploaded: AtomicU64,
    pub blobs_total: AtomicU64,
    pub blobs_done: AtomicU64,
    /// Blobs every repository already held: nothing was sent.
    pub blobs_skipped: AtomicU64,
    pub images_total: AtomicU64,
    /// Images whose manifests are all in the registry.
    pub images_done: AtomicU64,
    times: Mutex<Option<(Instant, Option<Instant>)>>,
}

/// A consistent-enough copy of [`PushProgress`] for the API (camelCase JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushSnapshot {
    pub running: bool,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub bytes_uploaded: u64,
    pub blobs_total: u64,
    pub blobs_done: u64,
    pub blobs_skipped: u64,
    pub images_total: u64,
    pub images_done: u64,
    /// Seconds since the push started (until it ended).
    pub elapsed_seconds: f64,
    /// Uploaded bytes per second over the elapsed time.
    pub bytes_per_second: u64,
}

impl PushProgress {
    pub fn snapshot(&self) -> PushSnapshot {
        let elapsed = self.elapsed();
        let bytes_uploaded = self.bytes_uploaded.load(Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        PushSnapshot {
            running: self.running.load(Ordering::Relaxed),
            bytes_total: self.bytes_total.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            bytes_uploaded,
            blobs_total: self.blobs_total.load(Ordering::Relaxed),
            blobs_done: self.blobs_done.load(Ordering::Relaxed),
            blobs_skipped: self.blobs_skipped.load(Ordering::Relaxed),
            images_total: self.images_total.load(Ordering::Relaxed),
            images_done: self.images_done.load(Ordering::Relaxed),
            elapsed_seconds: secs,
            bytes_per_second: if secs > 0.0 {
                (bytes_uploaded as f64 / secs) as u64
            } else {
                0
            },
        }
    }

    /// Time since the push started, up to its end.
    pub fn elapsed(&self) -> Duration {
        let times = self.times.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *times {
            Some((start, Some(end))) => end.duration_since(start),
            Some((start, None)) => start.elapsed(),
            None => Duration::ZERO,
        }
    }

    pub(crate) fn start(&self, bytes_total: u64, blobs_total: u64, images_total: u64) {
        for counter in [
            &self.bytes_done,
            &self.bytes_uploaded,
            &self.blobs_done,
            &self.blobs_skipped,
            &self.images_done,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        self.bytes_total.store(bytes_total, Ordering::Relaxed);
        self.blobs_total.store(blobs_total, Ordering::Relaxed);
        self.images_total.store(images_total, Ordering::Relaxed);
        *self.times.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), None));
        self.running.store(true, Ordering::Relaxed);
    }

    pub(crate) fn finish(&self) {
        if let Some((_, end)) = self
            .times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            *end = Some(Instant::now());
        }
        self.running.store(false, Ordering::Relaxed);
    }

    /// Bytes read into an upload (`sent`) or given back when an attempt failed.
    pub(crate) fn add_sent(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
        self.bytes_uploaded.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn take_back_sent(&self, n: u64) {
        self.bytes_done.fetch_sub(n, Ordering::Relaxed);
        self.bytes_uploaded.fetch_sub(n, Ordering::Relaxed);
    }

    pub(crate) fn blob_finished(&self, size: u64, skipped: bool, bytes_counted: u64) {
        self.bytes_done
            .fetch_add(size.saturating_sub(bytes_counted), Ordering::Relaxed);
        self.blobs_done.fetch_add(1, Ordering::Relaxed);
        if skipped {
            self.blobs_skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn image_finished(&self) {
        self.images_done.fetch_add(1, Ordering::Relaxed);
    }
}
