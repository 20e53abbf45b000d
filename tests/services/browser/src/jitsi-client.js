// The jitsi-meet client (npm @jitsi/rtcstats), imported the way jitsi-meet imports it.
// The page reads both halves from window.RtcstatsClient and wires them itself.
import rtcstats from '@jitsi/rtcstats/rtcstats';
import traceWs from '@jitsi/rtcstats/trace-ws';

export { rtcstats, traceWs };
