// Preloaded into supergateway (node --require bench/loopback.cjs ...): its Streamable HTTP
// listener is `app.listen(port)`, which binds every interface and has no flag to change that.
// A benchmark must not expose an unauthenticated MCP bridge on the network, so a listen() call
// that names a port but no host gets 127.0.0.1. Nothing else is touched.
'use strict';

const net = require('node:net');

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function loopbackListen(...args) {
    if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
        if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
    } else if (args[0] && typeof args[0] === 'object' && args[0].port !== undefined && !args[0].host
        && args[0].path === undefined) {
        args[0] = { ...args[0], host: '127.0.0.1' };
    }
    return listen.apply(this, args);
};
