// Command chat is a line-based chat server, built on tcpkit and its codec
// package.
//
// Usage:
//
//	go run ./examples/chat [-max-line N] [-max-buffered N] [ADDR]
//
// ADDR is in tcpkit's address grammar: host:port, :port, or a Unix socket
// path such as /tmp/chat.sock. The default, localhost:8125, is reachable
// from this machine only. Connect with telnet, nc or nc -U, and type: each
// line goes to everyone else as "NAME: TEXT". Your name is your address
// until you send "/nick NAME". Lines starting with "* " come from the
// server: welcome, joins, leaves, renames, errors.
//
// A line longer than -max-line bytes (line end included) gets its sender
// an error line and a disconnection. A client that stops reading is
// disconnected once -max-buffered bytes are waiting for it, so that it
// never holds up the others. SIGINT or SIGTERM tells every client the
// server is going, and stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tcpkit/tcpkit"
)

// defaultAddr is where the server listens without an ADDR.
const defaultAddr = "localhost:8125"

// grace is how long a shutdown waits for clients to leave before it
// closes their connections.
const grace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "chat: %v\nRun 'chat -h' for usage.\n", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "chat:", err) // e.g. the address is in use
		os.Exit(1)
	}
}

// usageError is an error in the command line.
type usageError struct{ error }

// run runs the chat server with the command line args (without the
// program name) until ctx is done. It prints "listening on ADDR" to stdout
// once it listens, and logs to stderr. A mistake in args is a usageError.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	maxLine := fs.Int("max-line", DefaultMaxLine, "longest line a client may send, in bytes, line end included")
	maxBuffered := fs.Int("max-buffered", DefaultMaxBuffered, "bytes queued for a client that does not read before it is disconnected")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: chat [flags] [ADDR]\n\nA line-based chat server on ADDR (default %s).\n\n", defaultAddr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	addr := defaultAddr
	switch {
	case fs.NArg() == 1:
		addr = fs.Arg(0)
	case fs.NArg() > 1:
		return usageError{fmt.Errorf("too many arguments: %q; want at most one ADDR", fs.Args())}
	}
	if *maxLine < 2 || *maxBuffered < 4 {
		return usageError{errors.New("-max-line must be at least 2 and -max-buffered at least 4")}
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	srv := NewRoom(*maxLine, log).Server(addr, *maxBuffered)
	srv.OnListening = func(a net.Addr) { fmt.Fprintf(stdout, "listening on %s\n", a) }
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("chat: clients still connected after the grace period were cut off", "err", err)
	}
	if err := <-served; !errors.Is(err, tcpkit.ErrServerClosed) {
		return err
	}
	return nil
}
