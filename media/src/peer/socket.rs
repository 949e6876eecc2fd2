//! The peer's UDP socket, watched: the WebRTC library's tokio runtime with every UDP socket it
//! creates wrapped, so that each datagram that reaches the peer (STUN, DTLS, RTP or RTCP) is a
//! sign of life for [`super::liveness`] — the library never tells its ICE agent about media. The
//! wrapper also carries a switch that drops everything the peer sends, which tests and the
//! load generator use to play a client whose path is cut.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    Transmit, default_runtime,
};

/// What the socket of one peer has seen, shared with its liveness watchdog.
#[derive(Debug)]
pub(crate) struct LinkActivity {
    base: Instant,
    /// Microseconds after `base` of the last datagram received, plus one (0 = none yet).
    last_heard_us: AtomicU64,
    /// Drop every outgoing datagram (a cut path, for tests).
    mute_outgoing: AtomicBool,
    /// Set to have the next datagram's destination noted in `sent_to`: once connected, the
    /// client's side of the selected pair (media goes there). Asked for once per connection,
    /// so the send path costs one relaxed load otherwise.
    destination_wanted: AtomicBool,
    sent_to: std::sync::Mutex<Option<SocketAddr>>,
}

impl LinkActivity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            last_heard_us: AtomicU64::new(0),
            mute_outgoing: AtomicBool::new(false),
            destination_wanted: AtomicBool::new(false),
            sent_to: std::sync::Mutex::new(None),
        })
    }

    fn heard(&self, now: Instant) {
        let us = now.saturating_duration_since(self.base).as_micros() as u64 + 1;
        self.last_heard_us.fetch_max(us, Ordering::Relaxed);
    }

    /// When the last datagram from the other side arrived.
    pub(crate) fn last_heard(&self) -> Option<Instant> {
        match self.last_heard_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(self.base + Duration::from_micros(us - 1)),
        }
    }

    /// Forgets the noted destination and has the next datagram's noted.
    pub(crate) fn want_destination(&self) {
        if let Ok(mut to) = self.sent_to.lock() {
            *to = None;
        }
        self.destination_wanted.store(true, Ordering::Relaxed);
    }

    /// The destination noted since [`Self::want_destination`], once a datagram went out.
    pub(crate) fn destination(&self) -> Option<SocketAddr> {
        self.sent_to.lock().ok().and_then(|a| *a)
    }

    pub(crate) fn set_mute_outgoing(&self, mute: bool) {
        self.mute_outgoing.store(mute, Ordering::Relaxed);
    }
}

/// The library's default (tokio) runtime, with watched UDP sockets.
pub(crate) struct WatchedRuntime {
    inner: Arc<dyn Runtime>,
    activity: Arc<LinkActivity>,
}

impl WatchedRuntime {
    pub(crate) fn new(activity: Arc<LinkActivity>) -> io::Result<Arc<Self>> {
        let inner = default_runtime().ok_or_else(|| io::Error::other("no async runtime"))?;
        Ok(Arc::new(Self { inner, activity }))
    }
}

impl fmt::Debug for WatchedRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedRuntime").finish_non_exhaustive()
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Runtime for WatchedRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(&self, pool: usize, future: BoxFuture<'static, ()>) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(pool, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        #[cfg(target_os = "linux")]
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        let inner = self.inner.wrap_udp_socket(socket)?;
        // The wrapper (quinn-udp) turns on UDP GRO, and the library then keeps two receive
        // buffers of 64 coalesced datagrams (192 KiB) per peer. An audio peer receives 50
        // small packets a second: GRO coalesces nothing worth it, so it is turned off again
        // and the buffers stay one datagram each.
        #[cfg(target_os = "linux")]
        {
            let off: libc::c_int = 0;
            // SAFETY: setsockopt on a descriptor the wrapper now owns and keeps open, with a
            // c_int option of the size given.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_UDP,
                    libc::UDP_GRO,
                    (&off as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Arc::new(WatchedUdpSocket {
            inner,
            activity: Arc::clone(&self.activity),
        }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote: SocketAddr,
    ) -> BoxFuture<'a, io::Result<Arc<dyn AsyncTcpStream>>> {
        self.inner.connect_tcp(remote)
    }

    fn resolve_host<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

/// A UDP socket that records each datagram it receives.
struct WatchedUdpSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    activity: Arc<LinkActivity>,
}

impl fmt::Debug for WatchedUdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedUdpSocket")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for WatchedUdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        if self.activity.mute_outgoing.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(transmit.contents.len()));
        }
        let sent = self.inner.poll_send(cx, transmit);
        if let Poll::Ready(Ok(_)) = sent
            && self.activity.destination_wanted.load(Ordering::Relaxed)
            && let Ok(mut to) = self.activity.sent_to.lock()
        {
            *to = Some(transmit.destination);
            self.activity
                .destination_wanted
                .store(false, Ordering::Relaxed);
        }
        sent
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let polled = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = &polled
            && *n > 0
        {
            self.activity.heard(Instant::now());
        }
        polled
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        // GRO is off on this socket (see `wrap_udp_socket`): one datagram per receive.
        1
    }
}
