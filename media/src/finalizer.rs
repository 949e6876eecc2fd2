//! End-of-session file work (closing the WAVs, the mix, the MP3s) on one background thread of
//! its own, one session at a time, at a lower CPU priority than everything else.
//!
//! Why: this is seconds of bulk CPU per session, while the real-time path has 20 ms deadlines
//! and per-packet latency bars. On tokio's blocking pool it competed at equal priority and
//! showed as latency and jitter spikes in every other session whenever one ended. Niced, it
//! takes only the CPU the live sessions leave; one thread keeps it to one core at most.

use std::sync::OnceLock;
use std::sync::mpsc;

/// Nice value of the finalizer thread (0 is normal; 19 the lowest priority).
const NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

static JOBS: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();

fn jobs() -> Option<&'static mpsc::Sender<Job>> {
    JOBS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("earshot-finalizer".into())
            .spawn(move || {
                lower_priority();
                for job in rx {
                    job();
                }
            })
            .map_err(|e| tracing::error!(error = %e, "finalizer thread not started"))
            .ok()
            .map(|_| tx)
    })
    .as_ref()
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: setpriority only reads its integer arguments; on Linux, PRIO_PROCESS with
    // who = 0 applies to the calling thread alone.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "finalizer priority not lowered");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Runs `job` on the finalizer thread after the jobs queued before it; `None` if the thread is
/// unavailable or the job panicked.
pub async fn run<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let wrapped: Job = Box::new(move || {
        let _ = tx.send(job());
    });
    jobs()?.send(wrapped).ok()?;
    rx.await.ok()
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn jobs_run_in_order_on_one_low_priority_thread() {
        let a = super::run(|| (std::thread::current().name().map(str::to_owned), 1)).await;
        let b = super::run(|| 2).await;
        assert_eq!(a, Some((Some("earshot-finalizer".to_owned()), 1)));
        assert_eq!(b, Some(2));
        #[cfg(target_os = "linux")]
        {
            // SAFETY: see lower_priority.
            let nice = super::run(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }).await;
            assert_eq!(nice, Some(super::NICE));
        }
    }
}
