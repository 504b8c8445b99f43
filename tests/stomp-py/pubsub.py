"""stomp.py from PyPI, a STOMP client that is not JavaScript, against examples/stomp over its
raw WebSocket (/stomp/websocket): CONNECTED's headers, pub/sub on a topic with the sender's own
headers passed through, a user destination, the /app/echo round trip, receipts, heart-beats
keeping an idle connection up, UNSUBSCRIBE, resuming a subscription after a message-id, and
DISCONNECT with a receipt.

    python pubsub.py HOST:PORT HEARTBEAT_MS

The example must run with --heartbeat-ms HEARTBEAT_MS. Prints "ok" when every check passes;
any failure raises, so the exit status is not 0.
"""

import queue
import sys
import time

import stomp

# How long any one frame may take to come.
TIMEOUT = 10
TOPIC = "/topic/rooms/python"


class Inbox(stomp.ConnectionListener):
    """Everything one connection receives, in order, for the script to take one at a time."""

    def __init__(self):
        self.frames = queue.Queue()
        self.heartbeat_timeouts = 0
        self.heartbeats = 0

    def on_connected(self, frame):
        self.frames.put(("CONNECTED", frame))

    def on_message(self, frame):
        self.frames.put(("MESSAGE", frame))

    def on_receipt(self, frame):
        self.frames.put(("RECEIPT", frame))

    def on_error(self, frame):
        self.frames.put(("ERROR", frame))

    def on_disconnected(self):
        self.frames.put(("DISCONNECTED", None))

    def on_heartbeat(self):
        self.heartbeats += 1

    def on_heartbeat_timeout(self):
        self.heartbeat_timeouts += 1

    def next(self, command):
        """The next frame, which must be a `command`."""
        kind, frame = self.frames.get(timeout=TIMEOUT)
        assert kind == command, f"expected {command}, got {kind}: {frame}"
        return frame

    def receipt(self, receipt):
        frame = self.next("RECEIPT")
        assert frame.headers["receipt-id"] == receipt, frame
        return frame

    def message(self, destination, body):
        """The next frame, which must be a MESSAGE to `destination` with `body`."""
        frame = self.next("MESSAGE")
        assert frame.headers["destination"] == destination, frame
        assert frame.body == body, frame
        return frame

    def nothing_for(self, seconds):
        try:
            kind, frame = self.frames.get(timeout=seconds)
        except queue.Empty:
            return
        raise AssertionError(f"expected nothing, got {kind}: {frame}")


def connect(host, port, heartbeat_ms, path, **headers):
    connection = stomp.WSConnection(
        [(host, port)],
        ws_path=path,
        heartbeats=(heartbeat_ms, heartbeat_ms),
        reconnect_attempts_max=1,
    )
    inbox = Inbox()
    connection.set_listener("inbox", inbox)
    connection.connect(wait=True, headers=headers)
    return connection, inbox, inbox.next("CONNECTED")


def main():
    address, heartbeat_ms = sys.argv[1], int(sys.argv[2])
    host, port = address.rsplit(":", 1)
    port = int(port)

    # alice is named on the endpoint URL, bob by CONNECT's login.
    alice, inbox, connected = connect(host, port, heartbeat_ms, "/stomp/websocket?user=alice")
    assert connected.headers["version"] == "1.2", connected
    assert connected.headers["user-name"] == "alice", connected
    assert connected.headers["heart-beat"] == f"{heartbeat_ms},{heartbeat_ms}", connected
    assert connected.headers["server"].startswith("tidings/"), connected
    bob, bob_inbox, connected = connect(
        host, port, heartbeat_ms, "/stomp/websocket", login="bob", passcode="secret"
    )
    assert connected.headers["user-name"] == "bob", connected

    # A topic, with receipts, the sender's own headers and a body that is not ASCII.
    alice.subscribe(TOPIC, id="room", ack="auto", headers={"receipt": "a1"})
    inbox.receipt("a1")
    bob.send(TOPIC, "hello from python", headers={"x-lang": "python", "receipt": "b1"})
    bob_inbox.receipt("b1")
    first = inbox.message(TOPIC, "hello from python")
    assert first.headers["subscription"] == "room", first
    assert first.headers["x-lang"] == "python", first
    bob.send(TOPIC, "zażółć gęślą jaźń")
    inbox.message(TOPIC, "zażółć gęślą jaźń")

    # A user destination: what bob sends to /user/alice/... comes to alice as /user/queue/...
    alice.subscribe("/user/queue/private", id="private", headers={"receipt": "a2"})
    inbox.receipt("a2")
    bob.send("/user/alice/queue/private", "psst")
    inbox.message("/user/queue/private", "psst")
    bob_inbox.nothing_for(0.3)

    # The application's /app/echo answers on the sender's /user/queue/echo.
    alice.subscribe("/user/queue/echo", id="echo", headers={"receipt": "a3"})
    inbox.receipt("a3")
    alice.send("/app/echo", "echo?")
    inbox.message("/user/queue/echo", "echo?")

    # Idle for more than three heart-beat intervals: still connected, heart-beats came.
    time.sleep(heartbeat_ms * 3.5 / 1000)
    assert alice.is_connected() and bob.is_connected()
    assert inbox.heartbeat_timeouts == 0 and bob_inbox.heartbeat_timeouts == 0
    assert inbox.heartbeats >= 2, inbox.heartbeats
    bob.send(TOPIC, "still here")
    inbox.message(TOPIC, "still here")

    # After UNSUBSCRIBE, nothing more from the topic.
    alice.unsubscribe("room", headers={"receipt": "a4"})
    inbox.receipt("a4")
    bob.send(TOPIC, "while away", headers={"receipt": "b2"})
    bob_inbox.receipt("b2")
    inbox.nothing_for(0.5)

    # Subscribing again after the first message's id gets everything since, in order, once.
    resume = {"resume-after": first.headers["message-id"], "receipt": "a5"}
    alice.subscribe(TOPIC, id="again", headers=resume)
    inbox.receipt("a5")
    for body in ["zażółć gęślą jaźń", "still here", "while away"]:
        inbox.message(TOPIC, body)
    inbox.nothing_for(0.5)

    # DISCONNECT with a receipt: the RECEIPT, and the connection ends. stomp.py closes its
    # socket when the receipt comes, before it tells its listeners of the receipt.
    alice.disconnect(receipt="bye")
    ends = [inbox.frames.get(timeout=TIMEOUT) for _ in range(2)]
    kinds = sorted(kind for kind, _ in ends)
    assert kinds == ["DISCONNECTED", "RECEIPT"], ends
    assert any(kind == "RECEIPT" and frame.headers["receipt-id"] == "bye" for kind, frame in ends)
    assert not alice.is_connected()
    bob.disconnect()
    print("ok")


if __name__ == "__main__":
    main()
