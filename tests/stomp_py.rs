//! A STOMP client that is not JavaScript: `stomp.py` from PyPI (`tests/stomp-py/pubsub.py`)
//! against the STOMP example over its raw WebSocket: pub/sub with the sender's headers, a user
//! destination, the `/app/echo` round trip, receipts, heart-beats, UNSUBSCRIBE, resume and
//! DISCONNECT. The script says what it checks; this test starts the example and runs it.
//!
//! Needs a Python with stomp.py: `bash tests/run-all.sh` makes one in `tests/stomp-py/.venv`
//! (or set `TIDINGS_PYTHON` to one that has `tests/stomp-py/requirements.txt`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tidings_tests::stomp::StompExample;
use tokio::process::Command;

/// Heart-beats of the example and the script, in milliseconds.
const HEARTBEAT_MS: u64 = 500;
/// How long the script may take (it idles for 3.5 heart-beats; the rest is quick).
const SCRIPT: Duration = Duration::from_secs(60);

fn python() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("stomp-py");
    let python = std::env::var_os("TIDINGS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join(".venv/bin/python"));
    assert!(
        python.exists(),
        "no Python with stomp.py at {}: run bash tests/run-all.sh, or set TIDINGS_PYTHON",
        python.display()
    );
    python
}

#[tokio::test]
#[ignore = "needs python with stomp.py; run bash tests/run-all.sh"]
async fn stomp_py_pub_sub_receipts_user_destinations_and_resume() {
    let example = StompExample::start(HEARTBEAT_MS).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("stomp-py/pubsub.py");
    let run = Command::new(python())
        .arg(&script)
        .arg(example.addr.to_string())
        .arg(HEARTBEAT_MS.to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT, run)
        .await
        .unwrap_or_else(|_| panic!("{} ran over {SCRIPT:?}", script.display()))
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "pubsub.py: {}\n{stdout}\n{stderr}",
        output.status
    );
}
