//! TCP forwarded across network namespaces, so that a test can give a namespace of its own
//! ([`super::netns::Netns`]) a TCP path to a server without any IP route: a participant there
//! reaches the server only over TCP (no UDP can leave), and the test still drives a browser
//! inside through its DevTools port.
//!
//! A socket belongs to the namespace of the thread that created it, whichever thread uses it
//! later; so sockets inside a namespace are made on a short-lived thread that has entered it
//! (`setns`), and then served by tokio like any other.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use tokio::net::{TcpListener, TcpStream};

/// Runs `f` on a new thread that has entered the network namespace `ns` (an `ip netns` name).
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with a namespace file descriptor it keeps open.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// One forwarding listener; stops when dropped.
pub struct TcpBridge {
    /// Where it listens (in the namespace it listens in).
    pub listen: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TcpBridge {
    /// Listens at `listen` inside `ns` and forwards each connection to `to` in the test's own
    /// namespace (e.g. a server on the host's loopback, at the same address inside).
    pub fn out_of(ns: &str, listen: SocketAddr, to: SocketAddr) -> TcpBridge {
        let listener = in_netns(ns, move || {
            let l = std::net::TcpListener::bind(listen)?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .unwrap_or_else(|e| panic!("listening at {listen} in {ns}: {e}"));
        let listener = TcpListener::from_std(listener).expect("tokio listener");
        let listen = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(to).await {
                        pipe(inbound, outbound).await;
                    }
                });
            }
        });
        TcpBridge { listen, task }
    }

    /// Listens on the host's loopback (a free port) and forwards each connection to `to`
    /// inside `ns`.
    pub async fn into(ns: &str, to: SocketAddr) -> TcpBridge {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let listen = listener.local_addr().expect("addr");
        let ns = ns.to_string();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let ns = ns.clone();
                tokio::spawn(async move {
                    let connected = tokio::task::spawn_blocking(move || {
                        in_netns(&ns, move || {
                            let s = std::net::TcpStream::connect(to)?;
                            s.set_nonblocking(true)?;
                            Ok(s)
                        })
                    })
                    .await;
                    if let Ok(Ok(s)) = connected
                        && let Ok(outbound) = TcpStream::from_std(s)
                    {
                        pipe(inbound, outbound).await;
                    }
                });
            }
        });
        TcpBridge { listen, task }
    }
}

async fn pipe(mut a: TcpStream, mut b: TcpStream) {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
}

impl Drop for TcpBridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}
