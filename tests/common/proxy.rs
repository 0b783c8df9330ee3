//! A TCP proxy the test can cut: every connection through it is dropped, and new ones are
//! refused, until it is restored; or cut just after the client sent given bytes (a
//! PostgreSQL COMMIT, say), so that the server acts on them and the answer is lost; or
//! black-holed: connections stay open and new ones are accepted, but nothing passes either
//! way until it is restored (what a partition looks like to TCP, whose retransmissions
//! then deliver what was held). For faults between dohost and its database or etcd.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    /// true while cut.
    cut: watch::Sender<bool>,
    /// true while black-holed.
    hole: watch::Sender<bool>,
    /// Bytes that, once a client has sent them, cut the proxy.
    trigger: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `target`, on a thread and runtime of its
    /// own: the host's start-up blocks the test's runtime while it connects through here.
    pub async fn start(target: SocketAddr) -> Arc<Proxy> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (cut, watch) = watch::channel(false);
        let (hole, held) = watch::channel(false);
        let trigger: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let proxy = Arc::new(Proxy {
            addr,
            cut,
            hole,
            trigger: trigger.clone(),
        });
        let cutter = proxy.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        std::thread::spawn(move || {
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    let Ok((inbound, _)) = listener.accept().await else {
                        return;
                    };
                    if *watch.borrow() {
                        drop(inbound);
                        continue;
                    }
                    let (watch, trigger, cutter) = (watch.clone(), trigger.clone(), cutter.clone());
                    let held = held.clone();
                    tokio::spawn(async move {
                        passing(&held).await;
                        let Ok(outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        relay(inbound, outbound, watch, held, trigger, cutter).await;
                    });
                }
            })
        });
        proxy
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Cuts once a client has sent `bytes`: they reach the server, and its answers, up to
    /// one that holds `bytes` too (PostgreSQL's CommandComplete for COMMIT is tagged
    /// "COMMIT"), are read and dropped, so the server acts on them and the client never
    /// learns how.
    pub fn cut_after(&self, bytes: &[u8]) {
        *self.trigger.lock().unwrap() = Some(bytes.to_vec());
    }

    /// Holds every byte in either direction, on open connections and new ones alike.
    pub fn black_hole(&self) {
        self.hole.send_replace(true);
    }

    pub fn restore(&self) {
        *self.trigger.lock().unwrap() = None;
        self.cut.send_replace(false);
        self.hole.send_replace(false);
    }
}

/// Returns once the proxy is not black-holed.
async fn passing(held: &watch::Receiver<bool>) {
    let _ = held.clone().wait_for(|hole| !*hole).await;
}

async fn relay(
    inbound: TcpStream,
    outbound: TcpStream,
    mut watch: watch::Receiver<bool>,
    held: watch::Receiver<bool>,
    trigger: Arc<Mutex<Option<Vec<u8>>>>,
    proxy: Arc<Proxy>,
) {
    let (mut client_r, mut client_w) = inbound.into_split();
    let (mut server_r, mut server_w) = outbound.into_split();
    // Set once the trigger went to the server: from then on the client hears nothing
    // more (its side is closed) while the server's answers are read and dropped until
    // the answer to the trigger itself, so that the server acts on it.
    let swallowing = AtomicBool::new(false);
    let up = async {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match client_r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let hit = trigger
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|t| contains(&buf[..n], t));
            if hit {
                swallowing.store(true, Ordering::SeqCst);
            }
            passing(&held).await;
            if server_w.write_all(&buf[..n]).await.is_err() || hit {
                if hit {
                    proxy.cut();
                }
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 << 10];
        let mut closed_client = false;
        loop {
            let n = match server_r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if swallowing.load(Ordering::SeqCst) {
                if !closed_client {
                    let _ = client_w.shutdown().await;
                    closed_client = true;
                }
                let answered = trigger
                    .lock()
                    .unwrap()
                    .as_ref()
                    .is_some_and(|t| contains(&buf[..n], t));
                if answered {
                    return;
                }
                continue;
            }
            passing(&held).await;
            if client_w.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let cut = async {
        let _ = watch.wait_for(|cut| *cut).await;
        if swallowing.load(Ordering::SeqCst) {
            // This connection ends when the server has answered the trigger.
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(down);
    tokio::select! {
        _ = up => {
            if swallowing.load(Ordering::SeqCst) {
                (&mut down).await;
            }
        }
        _ = &mut down => {}
        _ = cut => {}
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
