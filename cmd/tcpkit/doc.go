// Command tcpkit runs the Node.js net tutorial's echo server and a
// netcat-like client, on TCP ports and Unix sockets, with the tcpkit
// library.
//
// Usage:
//
//	tcpkit echo [ADDR] [flags]      the tutorial's echo server (default localhost:8124)
//	tcpkit connect ADDR [flags]     send stdin to ADDR, print what comes back
//	tcpkit version                  print the version
//
// Addresses are in tcpkit's grammar (see tcpkit.ParseAddr): host:port,
// [v6]:port, :port for every interface, or a Unix socket path (any address
// with a '/', or unix:NAME).
//
// tcpkit echo greets each client with "hello\r\n" (--greeting), then echoes
// everything back until the client half-closes. It logs one line per event
// to stderr with log/slog (--log-format text|json, --quiet). SIGINT or
// SIGTERM stops it gracefully within --grace; a second signal stops it at
// once. Exit status: 0 after a shutdown, 1 when the address cannot be
// bound, 128+N after a second signal N.
//
// tcpkit connect copies stdin to the connection and the connection to
// stdout, binary-safe. At the end of stdin it half-closes and prints the
// rest of the reply; it exits 0 once the server closes, and 1 with one line
// on stderr when the connection is refused, times out or is reset, or when
// the path is missing or not a socket.
//
// A wrong command line exits 2. Run "tcpkit COMMAND --help" for the flags
// and examples of each command.
package main
