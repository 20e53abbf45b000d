// Preloaded into the Node peer (node --require) by bench/peer.py: the peer's config
// has a port but no listen address, so it would listen on every interface. This
// makes a listen(port[, callback]) listen on 127.0.0.1 instead; nothing else changes.
'use strict';
const net = require('node:net');

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...args) {
  const portOnly = typeof args[0] === 'number'
    && (args.length === 1 || typeof args[1] === 'function');
  if (portOnly) {
    args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
