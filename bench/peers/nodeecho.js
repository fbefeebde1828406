// nodeecho is the Node.js echo server of the benchmarks: net.createServer
// with socket.pipe(socket), as in Node's own tutorial, with Nagle's
// algorithm off (setNoDelay) like the Go servers. When the client ends its
// side, pipe ends ours.
//
//   node nodeecho.js 127.0.0.1:8124     (or a Unix socket path)
'use strict';
const net = require('net');

const addr = process.argv[2] || '127.0.0.1:8124';
const server = net.createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => {}); // a reset by the client is not our failure
  socket.pipe(socket);
});
server.on('error', (err) => {
  console.error(err.message);
  process.exit(1);
});
const onListening = () => console.log('listening', addr);
if (addr.includes('/')) {
  server.listen(addr.replace(/^unix:/, ''), onListening);
} else {
  const i = addr.lastIndexOf(':');
  server.listen(Number(addr.slice(i + 1)), addr.slice(0, i).replace(/^\[|\]$/g, '') || undefined, onListening);
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
