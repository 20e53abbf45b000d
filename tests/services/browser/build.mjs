// Bundles each real client into dist/<name>.js, a browser script that sets
// window.RtcstatsClient = {rtcstats, traceWs}. Skips a bundle that is newer than its
// inputs (the entry, this script and the lock file), so repeated test runs cost nothing.
import { build } from 'esbuild';
import { mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

const bundles = {
    jitsi: 'src/jitsi-client.js',
    legacy: 'src/legacy-client.js',
};

// @jitsi/js-utils exports "./*" → "./dist/*", so the bare subpath the jitsi client
// imports names a directory, which package exports never resolve to an index file.
const alias = {
    '@jitsi/js-utils/browser-detection': join(
        here, 'node_modules/@jitsi/js-utils/dist/browser-detection/index.js'),
};

function mtime(path) {
    try {
        return statSync(path).mtimeMs;
    } catch {
        return 0;
    }
}

const force = process.argv.includes('--force');
mkdirSync(dist, { recursive: true });
for (const [name, entry] of Object.entries(bundles)) {
    const outfile = join(dist, `${name}.js`);
    const newestInput = Math.max(
        ...[entry, 'build.mjs', 'package-lock.json'].map(p => mtime(join(here, p))));
    if (!force && mtime(outfile) > newestInput) {
        console.log(`${outfile}: up to date`);
        continue;
    }
    await build({
        entryPoints: [join(here, entry)],
        outfile,
        bundle: true,
        format: 'iife',
        globalName: 'RtcstatsClient',
        platform: 'browser',
        target: 'chrome100',
        alias,
        logLevel: 'warning',
    });
    console.log(`${outfile}: built`);
}
