// The peer's feature extractor as an oracle: what packages/rtcstats-features of
// github rtcstats/rtcstats computes for one dump file.
//
//     node bench/peer_features.mjs PEER_DIR DUMP_FILE
//
// PEER_DIR is a checkout of that repository after `npm install --omit=dev` (nothing
// of it lives in our tree). The dump is read with the peer's own reader (`readDump`
// of rtcstats-shared: an RTCStatsDump, gzipped or not, or a webrtc-internals export),
// the tracks found with its `extractTracks`, and the three extractors run as its
// bin/features.js runs them. Printed on stdout, one JSON object:
//
//     {"client": {...}, "connections": [{"id": PC_ID, ..., "tracks": [{"statsId": ..., ...}]}],
//      "errors": ["client: TypeError: ..."], "notes": [...], "elapsedMs": {...}}
//
// Feature names stay the peer's (camelCase); `id` and `statsId` are identifiers we
// add (the connection's key in the dump, the track's inbound/outbound-rtp stats id),
// not features. As in bin/features.js, an undefined feature is left out. Unlike it,
// an extractor that throws is recorded in `errors` and the rest carries on, so one
// missing piece does not hide the others. The client extractor throws on a dump
// without a client-level `create` event (every dump not written by rtcstats-js); it
// is then run again with an empty one added, and `notes` says so. Non-finite numbers,
// which JSON cannot say, are written as {"nonFinite": "NaN" | "Infinity" | "-Infinity"}.
import fsPromises from 'node:fs/promises';
import path from 'node:path';
import {pathToFileURL} from 'node:url';

function usage(message) {
    console.error(message);
    console.error('usage: node bench/peer_features.mjs PEER_DIR DUMP_FILE');
    process.exit(2);
}

async function importFrom(peerDir, relative) {
    const file = path.join(peerDir, relative);
    try {
        await fsPromises.access(file);
    } catch {
        usage(`${peerDir}: no ${relative} in it (a checkout of github rtcstats/rtcstats?)`);
    }
    return import(pathToFileURL(file).href);
}

function defined(features) {
    const out = {};
    for (const [name, value] of Object.entries(features || {})) {
        if (value !== undefined) out[name] = value;
    }
    return out;
}

function nonFinite(_key, value) {
    if (typeof value === 'number' && !Number.isFinite(value)) {
        return {nonFinite: String(value)};
    }
    return value;
}

// Runs one extractor; on a throw, records where and why and gives undefined.
function attempt(errors, where, fn) {
    try {
        return fn();
    } catch (e) {
        errors.push(`${where}: ${e && e.stack ? e.stack.split('\n')[0] : String(e)}`);
        return undefined;
    }
}

async function main() {
    const [peerDir, dumpFile] = process.argv.slice(2);
    if (!peerDir || !dumpFile) usage('missing argument');
    const shared = await importFrom(peerDir, 'packages/rtcstats-shared/index.js');
    const extractors = await importFrom(peerDir, 'packages/rtcstats-features/features.js');

    const started = performance.now();
    const dump = await shared.readDump(new Blob([await fsPromises.readFile(dumpFile)]));
    if (!dump) {
        // readRTCStatsDump logs why and returns nothing for a dump it cannot parse.
        console.error(`${dumpFile}: the peer's reader returned nothing`);
        process.exit(1);
    }
    const read = performance.now();

    const errors = [];
    const notes = [];
    const clientTrace = dump.peerConnections['null'];
    const result = {client: null, connections: [], errors, notes};
    if (clientTrace === undefined) {
        errors.push('client: no client-level (null) events in the dump');
    } else {
        let client = attempt(errors, 'client', () => extractors.extractClientFeatures(clientTrace));
        if (client === undefined && !clientTrace.some(event => event.type === 'create')) {
            // Dumps of other clients (jitsi, the 2015 client) have no client-level
            // `create`, which the extractor dereferences. Its other client features do
            // not depend on it: compute them with an empty one at the first event's time
            // (start and duration unchanged), and say so.
            const first = clientTrace[0];
            const patched = [{...first, type: 'create', value: {}, extra: []}, ...clientTrace];
            const thrown = errors.pop();
            client = attempt(errors, 'client (with an empty create event)',
                () => extractors.extractClientFeatures(patched));
            if (client !== undefined) {
                notes.push(`client: no create event (${thrown.replace(/^client: /, '')}); ` +
                    'computed with an empty one added');
            }
        }
        result.client = client === undefined ? null : defined(client);
    }
    for (const id of Object.keys(dump.peerConnections)) {
        if (id === 'null') continue;
        const trace = dump.peerConnections[id];
        const features = attempt(errors, `connection ${id}`,
            () => extractors.extractConnectionFeatures(clientTrace, trace));
        const connection = {id, ...defined(features), tracks: []};
        const tracks = await shared.extractTracks(trace);
        for (const track of tracks) {
            const trackFeatures = attempt(errors, `track ${id}/${track.statsId}`,
                () => extractors.extractTrackFeatures(clientTrace, trace, track));
            connection.tracks.push({statsId: track.statsId ?? null, ...defined(trackFeatures)});
        }
        result.connections.push(connection);
    }
    const extracted = performance.now();
    result.elapsedMs = {read: read - started, extract: extracted - read};
    process.stdout.write(JSON.stringify(result, nonFinite) + '\n');
}

await main();
