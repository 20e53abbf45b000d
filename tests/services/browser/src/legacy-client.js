// The 2015 client (npm rtcstats 5.x), CommonJS modules as published.
import rtcstats from 'rtcstats/rtcstats';
import traceWs from 'rtcstats/trace-ws';

export { rtcstats, traceWs };
