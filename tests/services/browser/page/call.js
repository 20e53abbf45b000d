'use strict';
// A loopback call (two RTCPeerConnections on one page) traced by a real rtcstats client.
// State for the Python driver lives in window.harness; window.done settles when the trace
// is closed. The page only paces the call itself (its length, the getStats interval); every
// other wait is on an event: a socket opening, an acknowledgement, a close.

const params = new URLSearchParams(location.search);
const client = params.get('client');
const wsBase = params.get('ws');
const conf = params.get('conf');
const user = params.get('user');
const seconds = Number(params.get('seconds') || '5');
const mode = params.get('mode') || 'call';
const burst = Number(params.get('burst') || '1100');

const harness = {
    state: 'running', // running | done | failed
    phase: 'loading', // what the page is doing now
    phases: [ 'loading' ], // every phase reached, in order: the driver waits on these
    error: null,
    failure: null, // what the deliberately bad setRemoteDescription threw
    sockets: [], // one per websocket the client opened, see WatchedWebSocket
    clientCloses: [], // codes the jitsi client's onCloseCallback saw
    notes: [],
};
window.harness = harness;

function enter(phase) {
    harness.phase = phase;
    harness.phases.push(phase);
}

// -- waiting on events ---------------------------------------------------------------

const waiters = new Set();

function notify() {
    for (const waiter of [...waiters]) {
        if (waiter.predicate()) {
            waiters.delete(waiter);
            waiter.resolve();
        }
    }
}

function until(predicate) {
    if (predicate()) {
        return Promise.resolve();
    }
    return new Promise(resolve => waiters.add({ predicate, resolve }));
}

// -- the client's websockets, watched (it never learns) ------------------------------

function seqOf(text) {
    // 3.1 envelopes carry the seq as the 5th element of data (a JSON string for
    // stats-entry, an array for identity); 2.0 messages have none.
    const message = JSON.parse(text);
    if (Array.isArray(message) || !message.data) {
        return null;
    }
    const data = typeof message.data === 'string' ? JSON.parse(message.data) : message.data;
    return Array.isArray(data) && Number.isInteger(data[4]) ? data[4] : null;
}

const NativeWebSocket = window.WebSocket;

class WatchedWebSocket extends NativeWebSocket {
    constructor(url, protocols) {
        super(url, protocols);
        const info = {
            url: String(url), protocol: null, open: false, closeCode: null,
            sentSeqs: [], sentMessages: 0, sn: [],
        };
        this.info = info;
        harness.sockets.push(info);
        this.addEventListener('open', () => {
            info.open = true;
            info.protocol = this.protocol;
            notify();
        });
        this.addEventListener('message', event => {
            const message = JSON.parse(event.data);
            if (message.type === 'sn') {
                info.sn.push(message.body);
            }
            notify();
        });
        this.addEventListener('close', event => {
            info.closeCode = event.code;
            notify();
        });
    }

    send(data) {
        this.info.sentMessages += 1;
        const seq = seqOf(data);
        if (seq !== null) {
            this.info.sentSeqs.push(seq);
        }
        super.send(data);
    }
}
window.WebSocket = WatchedWebSocket;

const currentSocket = () => harness.sockets[harness.sockets.length - 1];
const lastSent = () => Math.max(0, ...harness.sockets.flatMap(s => s.sentSeqs));
const lastAck = socket => Math.max(0, ...socket.sn.map(body => body.value));

// -- the call --------------------------------------------------------------------------

function connectedOnce(pc) {
    return new Promise((resolve, reject) => {
        const check = () => {
            if (pc.connectionState === 'connected') {
                resolve();
            } else if (pc.connectionState === 'failed') {
                reject(new Error('peer connection failed'));
            }
        };
        pc.addEventListener('connectionstatechange', check);
        check();
    });
}

async function call() {
    enter('calling');
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    const caller = new RTCPeerConnection({ iceServers: [] });
    const callee = new RTCPeerConnection({ iceServers: [] });
    const relay = (from, to) => from.addEventListener('icecandidate', event => {
        if (event.candidate) {
            to.addIceCandidate(event.candidate).catch(
                err => harness.notes.push(`addIceCandidate: ${err}`));
        }
    });
    relay(caller, callee);
    relay(callee, caller);
    for (const track of stream.getTracks()) {
        caller.addTrack(track, stream);
    }
    const connected = Promise.all([ connectedOnce(caller), connectedOnce(callee) ]);
    await caller.setLocalDescription(await caller.createOffer());
    await callee.setRemoteDescription(caller.localDescription);
    await callee.setLocalDescription(await callee.createAnswer());
    await caller.setRemoteDescription(callee.localDescription);
    await connected;
    try {
        await callee.setRemoteDescription({ type: 'offer', sdp: 'this is not an SDP' });
    } catch (err) {
        harness.failure = String(err);
    }
    if (harness.failure === null) {
        throw new Error('the garbage setRemoteDescription was accepted');
    }
    enter('connected');
    return { stream, pcs: [ caller, callee ] };
}

function hold(s) {
    return new Promise(resolve => setTimeout(resolve, s * 1000));
}

function hangUp({ stream, pcs }) {
    stream.getTracks().forEach(track => track.stop());
    pcs.forEach(pc => pc.close());
}

// -- clients ---------------------------------------------------------------------------

function identity() {
    return {
        confName: conf,
        displayName: user,
        meetingUniqueId: `mu-${conf}`,
        applicationName: 'rtcstats-collector-tests',
        endpointId: 'ep-loopback',
    };
}

// Application events traced in acknowledged batches, as jitsi-meet traces its own events:
// more entries than the client's 1000-entry replay buffer holds, so a client that did not
// trim its buffer on our acks would lose what it traces while disconnected.
async function ackedBurst(trace) {
    enter('burst');
    for (let sent = 0; sent < burst; sent += 100) {
        for (let i = sent; i < Math.min(sent + 100, burst); i += 1) {
            trace.statsEntry('harness.burst', null, { i });
        }
        const socket = currentSocket();
        const upTo = lastSent();
        await until(() => lastAck(socket) >= upTo);
    }
}

async function dropAndResume(trace) {
    await ackedBurst(trace);
    const first = currentSocket();
    enter('drop-me');
    await until(() => first.closeCode !== null);
    enter('reconnecting');
    await until(() => harness.sockets.length > 1 && currentSocket().sn.some(
        body => body.state === 'initial'));
    enter('resumed');
}

async function runJitsi() {
    const { rtcstats, traceWs } = window.RtcstatsClient;
    let trace = null;
    const onCloseCallback = ({ code }) => {
        harness.clientCloses.push(code);
        if (code !== 3001 && code !== 3002 && trace !== null) {
            // Traced while no socket is open: only the replay buffer holds these.
            for (let i = 0; i < 20; i += 1) {
                trace.statsEntry('harness.offline', null, { i });
            }
        }
        notify();
    };
    trace = traceWs({ endpoint: wsBase, meetingFqn: conf, onCloseCallback });
    rtcstats(trace, { pollInterval: 1000, useLegacy: false, sendSdp: true });
    trace.connect(false);
    trace.identity('identity', null, identity());
    const media = await call();
    if (mode === 'resume') {
        await dropAndResume(trace);
    }
    enter('holding');
    await hold(seconds);
    hangUp(media);
    enter('closing');
    const last = currentSocket();
    trace.close();
    await until(() => last.closeCode !== null);
}

async function runLegacy() {
    const { rtcstats, traceWs } = window.RtcstatsClient;
    // Connects at once to wsBase + this page's path: /<conf>/call.html.
    const trace = traceWs(wsBase);
    rtcstats(trace, 1000, [ '' ]);
    trace('identity', null, identity());
    const media = await call();
    enter('holding');
    await hold(seconds);
    hangUp(media);
    enter('closing');
    const socket = currentSocket();
    await until(() => socket.open); // the 2015 client drops what it traces after close()
    trace.close();
    await until(() => socket.closeCode !== null);
}

function loadClient() {
    return new Promise((resolve, reject) => {
        const script = document.createElement('script');
        script.src = `/dist/${client}.js`;
        script.onload = resolve;
        script.onerror = () => reject(new Error(`cannot load /dist/${client}.js`));
        document.head.appendChild(script);
    });
}

async function main() {
    if (!wsBase || !conf || !user || ![ 'jitsi', 'legacy' ].includes(client)) {
        throw new Error('query needs client=jitsi|legacy, ws, conf and user');
    }
    await loadClient();
    await (client === 'jitsi' ? runJitsi() : runLegacy());
}

window.done = main().then(
    () => {
        enter('done');
        harness.state = 'done';
    },
    err => {
        harness.state = 'failed';
        harness.error = String((err && err.stack) || err);
    });
