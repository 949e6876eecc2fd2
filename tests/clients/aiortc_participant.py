#!/usr/bin/env python3
"""An Earshot participant made with aiortc (what Pipecat's SmallWebRTC and many bots use).

It does what the participant page does, over HTTP and WHIP (RFC 9725): opens the invite page
(which creates the session), consents, POSTs its SDP offer (application/sdp) to the invite's
WHIP endpoint, applies the answer, sends a WAV file as its microphone (looped, at real-time
pace, with aiortc's MediaPlayer) and records the audio it receives. It runs until the server
ends the session or --max-seconds pass, then hangs up with DELETE on the WHIP resource (unless
the session ended on its own) and prints one JSON summary line on stdout.

Events are printed as JSON lines on stdout as they happen ({"event": ...}); the summary is the
last line ({"summary": {...}}). Diagnostics go to stderr.

Knobs for the liveness tests:
  --consent-interval S   aioice sends its RFC 7675 consent checks every S seconds exactly
                         (aioice's module constant, 5 s +-20 % by default);
  --stop-sending-after S S seconds after connecting, every datagram this client would send
                         (consent checks, RTP, RTCP, DTLS) is dropped, as when the network path
                         goes away; the client keeps receiving.
  --host-address IP      gather the host candidate on this address only (aioice skips
                         127.0.0.1 otherwise and gathers every interface's address).

Nothing but the given server is contacted: the RTCConfiguration has an explicit empty
iceServers list (aiortc adds a public STUN server when none is given).
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import wave

import aioice
import aioice.ice
import aiortc
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError

TERMINAL = ("completed", "abandoned", "admin_ended", "restarted")

T0 = time.monotonic()


def now_ms():
    return round((time.monotonic() - T0) * 1000.0, 1)


def emit(obj):
    print(json.dumps(obj), flush=True)


def log(msg):
    print(f"[aiortc {now_ms():9.1f} ms] {msg}", file=sys.stderr, flush=True)


# ---------- aioice knobs (module-level, set before any connection exists) ----------

class Cut:
    """Drops every outgoing datagram while `on`; counts consent checks sent."""

    on = False
    dropped = 0
    # Binding requests sent after the connection was up (consent checks), ms since start.
    checks = []
    connected = False


def install_knobs(args):
    if args.host_address:
        addresses = [args.host_address]
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)
    if args.consent_interval is not None:
        aioice.ice.CONSENT_INTERVAL = args.consent_interval

        class _NoJitter:
            # aioice sleeps CONSENT_INTERVAL * (0.8 + 0.4 * random()): 0.5 makes it exact.
            @staticmethod
            def random():
                return 0.5

        aioice.ice.random = _NoJitter

    proto = aioice.ice.StunProtocol
    orig_send_data = proto.send_data
    orig_send_stun = proto.send_stun

    async def send_data(self, data, addr):
        if Cut.on:
            Cut.dropped += 1
            return
        await orig_send_data(self, data, addr)

    def send_stun(self, message, addr):
        if Cut.on:
            Cut.dropped += 1
            return
        if (
            Cut.connected
            and message.message_method == aioice.stun.Method.BINDING
            and message.message_class == aioice.stun.Class.REQUEST
        ):
            Cut.checks.append(now_ms())
        orig_send_stun(self, message, addr)

    proto.send_data = send_data
    proto.send_stun = send_stun


# ---------- HTTP (standard library, run off the event loop) ----------

def http(method, url, body=None, content_type=None, timeout=10.0):
    data = None
    headers = {"user-agent": f"aiortc/{aiortc.__version__} earshot-test-client"}
    if body is not None:
        data = body.encode() if isinstance(body, str) else body
        headers["content-type"] = content_type or "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode("utf-8", "replace")


async def ahttp(*a, **kw):
    return await asyncio.to_thread(http, *a, **kw)


# ---------- receiving ----------

class Receiver:
    """Reads the received track, writes it to a WAV file and counts it."""

    def __init__(self, path):
        self.path = path
        self.frames = 0
        self.samples = 0
        self.first_frame_ms = None
        self.last_frame_ms = None
        self.loud_frames = 0
        self.wav = None

    async def run(self, track):
        try:
            while True:
                frame = await track.recv()
                self.on_frame(frame)
        except MediaStreamError:
            pass
        finally:
            if self.wav is not None:
                self.wav.close()

    def on_frame(self, frame):
        if frame.format.name != "s16":
            raise RuntimeError(f"unexpected sample format {frame.format.name}")
        channels = len(frame.layout.channels)
        if self.wav is None:
            self.wav = wave.open(self.path, "wb")
            self.wav.setnchannels(channels)
            self.wav.setsampwidth(2)
            self.wav.setframerate(frame.sample_rate)
        pcm = bytes(frame.planes[0])[: frame.samples * channels * 2]
        self.wav.writeframes(pcm)
        self.frames += 1
        self.samples += frame.samples
        t = now_ms()
        if self.first_frame_ms is None:
            self.first_frame_ms = t
        self.last_frame_ms = t
        # Peak above about -40 dBFS: the interviewer is speaking.
        view = memoryview(pcm).cast("h")
        if max(abs(min(view)), abs(max(view))) > 328:
            self.loud_frames += 1


# ---------- the participant ----------

async def run(args):
    install_knobs(args)
    base = args.server.rstrip("/")
    token = args.token
    invite = f"{base}/v1/invites/{urllib.parse.quote(token)}"
    changes = []
    summary = {
        "aiortc": aiortc.__version__,
        "aioice": getattr(aioice, "__version__", "?"),
        "state_changes": changes,
    }

    status, _, _ = await ahttp("GET", f"{base}/i/{urllib.parse.quote(token)}")
    if status != 200:
        raise SystemExit(f"invite page: {status}")
    status, _, text = await ahttp("POST", f"{invite}/consent", json.dumps({"accept": True}))
    if status != 200:
        raise SystemExit(f"consent: {status} {text}")
    session_id = json.loads(text)["session_id"]
    summary["session_id"] = session_id

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    player = MediaPlayer(args.wav, loop=True)
    pc.addTransceiver(player.audio, direction="sendrecv")
    receiver = Receiver(args.record)
    recv_task = None
    connected = asyncio.Event()
    timeline = {"connected_ms": None}

    @pc.on("track")
    def on_track(track):
        nonlocal recv_task
        if track.kind == "audio" and recv_task is None:
            recv_task = asyncio.ensure_future(receiver.run(track))

    closing = {"by_client": False}
    lookups = []

    async def note_session_state(change):
        status, _, text = await ahttp("GET", invite)
        if status == 200:
            change["session_state"] = ((json.loads(text) or {}).get("session") or {}).get("state")

    @pc.on("connectionstatechange")
    async def on_conn():
        t = now_ms()
        change = {"kind": "connection", "state": pc.connectionState, "at_ms": t}
        changes.append(change)
        emit({"event": "connection", "state": pc.connectionState, "at_ms": t})
        if pc.connectionState in ("closed", "failed"):
            if closing["by_client"]:
                change["by_client"] = True
            else:
                # Closed by the server at the end of the session, or lost? Note the session's
                # state then.
                lookups.append(asyncio.ensure_future(note_session_state(change)))
        if pc.connectionState == "connected" and timeline["connected_ms"] is None:
            timeline["connected_ms"] = t
            Cut.connected = True
            connected.set()

    @pc.on("iceconnectionstatechange")
    async def on_ice():
        t = now_ms()
        changes.append({"kind": "ice", "state": pc.iceConnectionState, "at_ms": t})

    # aiortc gathers every candidate in setLocalDescription: the offer is complete.
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    offered_ms = now_ms()
    status, headers, answer = await ahttp(
        "POST", f"{invite}/whip", offer, content_type="application/sdp"
    )
    answered_ms = now_ms()
    if status != 201:
        raise SystemExit(f"whip: {status} {answer}")
    location = headers.get("Location") or headers.get("location")
    resource = urllib.parse.urljoin(f"{invite}/whip", location) if location else None
    summary["whip_ms"] = round(answered_ms - offered_ms, 1)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    try:
        await asyncio.wait_for(connected.wait(), args.connect_timeout)
    except asyncio.TimeoutError:
        summary["error"] = "not connected in time"
    if timeline["connected_ms"] is not None:
        summary["offer_to_connected_ms"] = round(timeline["connected_ms"] - offered_ms, 1)

    ended_state = None
    stopped_ms = None
    deadline = time.monotonic() + args.max_seconds
    if timeline["connected_ms"] is not None:
        emit({"event": "connected", "offer_to_connected_ms": summary["offer_to_connected_ms"]})
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            since = (now_ms() - timeline["connected_ms"]) / 1000.0
            if (
                args.stop_sending_after is not None
                and stopped_ms is None
                and since >= args.stop_sending_after
            ):
                Cut.on = True
                stopped_ms = now_ms()
                emit({"event": "stopped_sending", "at_ms": stopped_ms})
            status, _, text = await ahttp("GET", invite)
            if status == 200:
                s = (json.loads(text) or {}).get("session") or {}
                if s.get("state") in TERMINAL:
                    ended_state = s["state"]
                    break

    summary["connected_ms"] = timeline["connected_ms"]
    summary["ended_ms"] = now_ms()
    summary["session_state_at_end"] = ended_state
    summary["stopped_sending_ms"] = stopped_ms
    summary["datagrams_dropped"] = Cut.dropped
    summary["consent_checks_ms"] = Cut.checks
    stats = await pc.getStats()
    for s in stats.values():
        if s.type == "inbound-rtp":
            summary["rtp_in"] = {
                "packets": s.packetsReceived,
                "bytes": getattr(s, "bytesReceived", None),
                "lost": s.packetsLost,
                "jitter": s.jitter,
            }
        elif s.type == "outbound-rtp":
            summary["rtp_out"] = {"packets": s.packetsSent, "bytes": s.bytesSent}
    summary["received"] = {
        "frames": receiver.frames,
        "seconds": round(receiver.samples / 48000.0, 3),
        "loud_frames": receiver.loud_frames,
        "first_frame_ms": receiver.first_frame_ms,
        "last_frame_ms": receiver.last_frame_ms,
        "wav": args.record,
    }
    if ended_state is None and resource:
        status, _, _ = await ahttp("DELETE", resource)
        summary["hangup_status"] = status
    player.audio.stop()
    closing["by_client"] = True
    await pc.close()
    if lookups:
        await asyncio.gather(*lookups)
    if recv_task is not None:
        try:
            await asyncio.wait_for(recv_task, 5)
        except asyncio.TimeoutError:
            recv_task.cancel()
    emit({"summary": summary})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--token", required=True, help="invite token")
    p.add_argument("--wav", required=True, help="speech to send (looped)")
    p.add_argument("--record", required=True, help="WAV file for the received audio")
    p.add_argument("--max-seconds", type=float, default=150.0)
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--consent-interval", type=float)
    p.add_argument("--stop-sending-after", type=float)
    p.add_argument("--host-address")
    args = p.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
