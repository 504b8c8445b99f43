//! A real `redis-server` (the Debian package) on a free loopback port, for the tests of the
//! Redis store and of clusters: started by [`RedisServer::start`], stopped when dropped, and
//! stoppable and restartable on the same port mid-test.
//!
//! The server appends every write to its log and syncs it before answering (`appendfsync
//! always`), so a stop and restart keeps everything Redis acknowledged; its files live in a
//! fresh directory under the system's temporary directory, removed on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tidings_redis::{Options, RedisStore};

/// The server and runtime behind [`shared_store`]: tests each run on a runtime of their own,
/// which ends with the test, while a store's connections and listener must outlive any one.
static SHARED: LazyLock<(RedisServer, tokio::runtime::Runtime)> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the shared Redis store");
    (RedisServer::start(), runtime)
});

/// A `RedisStore` under a fresh prefix on a `redis-server` shared by the whole test process.
pub fn shared_store() -> RedisStore {
    shared_stores(1).remove(0)
}

/// `n` `RedisStore`s, each with connections of its own, under one fresh prefix on the shared
/// `redis-server`: the stores of `n` nodes of one service.
pub fn shared_stores(n: usize) -> Vec<RedisStore> {
    let (server, runtime) = &*SHARED;
    let prefix = format!("test-{:016x}:", rand::random::<u64>());
    let url = server.url();
    // Connecting blocks on the shared runtime from a thread of its own: the caller may be on a
    // runtime, where blocking is not allowed.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                (0..n)
                    .map(|_| {
                        let options = Options::default().prefix(prefix.clone());
                        runtime
                            .block_on(RedisStore::connect_with(&url, options))
                            .expect("connect to the shared redis-server")
                    })
                    .collect()
            })
            .join()
            .expect("connecting thread")
    })
}

/// How long `redis-server` has to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or stopped) `redis-server`.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port of 127.0.0.1. Panics, saying how to install it, if
    /// it is missing.
    pub fn start() -> RedisServer {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "tidings-redis-{}-{port}-{stamp:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the redis directory");
        let mut server = RedisServer {
            port,
            dir,
            child: None,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Stops the server (SIGKILL: acknowledged writes are already on disk) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Closing its stdin makes the wrapping shell kill the server and wait for it.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the data it had, and waits until it
    /// answers.
    ///
    /// The server runs under a shell that kills it once its stdin closes, which happens when
    /// this process ends however it ends: a server of a `static` (never dropped) or of a test
    /// that aborted does not outlive the tests.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(error) = Command::new("redis-server").arg("--version").output() {
            panic!(
                "cannot run redis-server ({error}); install it with \
                 `apt-get install redis-server`, or run `bash tests/run-all.sh`"
            );
        }
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"redis-server "$@" & server=$!; cat >/dev/null; kill -9 $server; wait $server"#)
            .arg("sh")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sh for redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {START_TIMEOUT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
