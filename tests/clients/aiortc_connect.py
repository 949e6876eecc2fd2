#!/usr/bin/env python3
"""Offer -> connected with aiortc, one connection after another (the `connect` benchmark).

Reads WHIP endpoint URLs (`http://host:port/v1/invites/{token}/whip`, of invites the caller has
already opened and consented to) from stdin, one per line. For each: a new RTCPeerConnection
with an audio transceiver (sendrecv, aiortc's silence track as the microphone), createOffer and
setLocalDescription (aiortc gathers every candidate there: the offer is complete, no trickle),
POST of the offer, setRemoteDescription of the answer, then a wait for connectionState
`connected` (ICE and DTLS done); then DELETE of the WHIP resource (the hang-up) and close.
Prints one JSON line per connection on stdout, times in ms from the peer's creation: each
connection state and ICE state when first seen ("connecting", "connected", "ice_checking",
"ice_completed", ...), and

  {"i": 0, "gathered": .., "post_sent": .., "answer": .., "applied": ..,
   "offer_to_connected_ms": .., "hangup_status": 200, "error": null}

The first line is {"ready": true, "aiortc": "...", "aioice": "..."}. Exits at the end of stdin.
Diagnostics go to stderr.

  --host-address IP   gather the host candidate on this address only (aioice skips 127.0.0.1
                      otherwise and gathers every interface's address).

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

import aioice
import aioice.ice
import aiortc
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack


def emit(obj):
    print(json.dumps(obj), flush=True)


def http(method, url, body=None, content_type=None, timeout=10.0):
    data = None
    headers = {"user-agent": f"aiortc/{aiortc.__version__} earshot-connect-bench"}
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
    # As tests/clients/aiortc_participant.py does: off the event loop.
    return await asyncio.to_thread(http, *a, **kw)


async def connect_once(i, whip, timeout):
    t0 = time.perf_counter()

    def ms():
        return round((time.perf_counter() - t0) * 1000.0, 2)

    out = {"i": i, "error": None}
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = AudioStreamTrack()
    pc.addTransceiver(track, direction="sendrecv")
    connected = asyncio.Event()
    failed = asyncio.Event()

    @pc.on("connectionstatechange")
    async def on_conn():
        s = pc.connectionState
        out.setdefault(s, ms())
        if s == "connected":
            connected.set()
        elif s in ("failed", "closed"):
            failed.set()

    @pc.on("iceconnectionstatechange")
    async def on_ice():
        out.setdefault("ice_" + pc.iceConnectionState, ms())

    try:
        await pc.setLocalDescription(await pc.createOffer())
        out["gathered"] = ms()
        offer = pc.localDescription.sdp
        out["post_sent"] = ms()
        status, headers, answer = await ahttp(
            "POST", whip, offer, content_type="application/sdp"
        )
        out["answer"] = ms()
        if status != 201:
            out["error"] = f"WHIP {status}: {answer[:200]}"
            return out
        location = headers.get("Location") or headers.get("location")
        resource = urllib.parse.urljoin(whip, location) if location else None
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        out["applied"] = ms()
        done = asyncio.ensure_future(connected.wait())
        bad = asyncio.ensure_future(failed.wait())
        await asyncio.wait([done, bad], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        bad.cancel()
        if not connected.is_set():
            out["error"] = f"not connected (state {pc.connectionState})"
        else:
            out["offer_to_connected_ms"] = round(out["connected"] - out["post_sent"], 2)
        if resource:
            status, _, _ = await ahttp("DELETE", resource)
            out["hangup_status"] = status
    except Exception as e:  # reported, the loop goes on
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        track.stop()
        await pc.close()
    return out


async def run(args):
    if args.host_address:
        addresses = [args.host_address]
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)
    emit({"ready": True, "aiortc": aiortc.__version__, "aioice": getattr(aioice, "__version__", "?")})
    loop = asyncio.get_running_loop()
    i = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        whip = line.strip()
        if not whip:
            continue
        emit(await connect_once(i, whip, args.connect_timeout))
        i += 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host-address")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
