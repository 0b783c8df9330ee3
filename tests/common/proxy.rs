//! A TCP proxy the test can cut: every connection through it is dropped, and new ones are
//! refused, until it is restored. For faults between dohost and its database.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    /// true while cut.
    cut: watch::Sender<bool>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `target`, on a thread and runtime of its
    /// own: the host's start-up blocks the test's runtime while it connects through here.
    pub async fn start(target: SocketAddr) -> Arc<Proxy> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (cut, watch) = watch::channel(false);
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
                    let mut watch = watch.clone();
                    tokio::spawn(async move {
                        let Ok(outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        let (mut a, mut b) = (inbound, outbound);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                            _ = watch.wait_for(|cut| *cut) => {}
                        }
                    });
                }
            })
        });
        Arc::new(Proxy { addr, cut })
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}
