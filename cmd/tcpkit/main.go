package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/tcpkit/tcpkit"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command ran and failed: bind, connect, reset, timeout
	exitUsage = 2 // the command line is wrong
	exitCut   = 3 // tcpkit echo: the shutdown cut connections short
)

// run runs the tcpkit command line args (without the program name) and
// returns the process exit code. Cancelling ctx stops a running echo server
// gracefully, as the first SIGINT does. run subscribes to SIGINT and SIGTERM
// while an echo server runs; tests that want to send their own signals use
// an app with a signals hook instead.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	return a.run(ctx, args)
}

// app is one run of the command: its standard streams and the hooks that
// tests replace.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	// signals subscribes to the signals that stop an echo server and
	// returns the channel they arrive on and a function that unsubscribes.
	// Nil means SIGINT and SIGTERM through os/signal.
	signals func() (<-chan os.Signal, func())

	// ready, if set, is called once an echo server listens, with the
	// server, as built from the flags, and its bound addresses in tcpkit's
	// address grammar.
	ready func(srv *tcpkit.Server, addrs []string)
}

// run parses args, runs the subcommand, and turns its outcome into an exit
// code and at most one line on stderr (two for a usage error, which adds
// where to find help).
func (a *app) run(ctx context.Context, args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitErr
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintf(a.stderr, "%s: %s\n", cmd.CommandPath(), oneLine(ee.msg))
		}
		return ee.code
	}
	// Anything else comes from cobra before the command ran: an unknown
	// flag or command, a bad flag value, a wrong number of arguments.
	fmt.Fprintf(a.stderr, "%s: %s\nRun '%s --help' for usage.\n", cmd.CommandPath(), oneLine(err.Error()), cmd.CommandPath())
	return exitUsage
}

// rootCommand builds a fresh command tree, so that every run, and every
// test, has its own flags.
func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "tcpkit",
		Short: "TCP and Unix-socket tools built on the tcpkit library",
		Long: `tcpkit runs the Node.js net tutorial's echo server and a netcat-like
client, on TCP ports and Unix sockets, with the tcpkit Go library.

Addresses use tcpkit's grammar everywhere:
  localhost:8124   host:port (loopback)     [::1]:8124      IPv6 in brackets
  :8124 or 8124    every interface          /tmp/echo.sock  a Unix socket path
  unix:echo.sock   a relative Unix path     unix:@name      Linux abstract socket`,
		Example: `  tcpkit echo                         # echo server on localhost:8124
  tcpkit connect localhost:8124       # talk to it (or: telnet localhost 8124)
  tcpkit echo /tmp/echo.sock          # the same on a Unix socket
  tcpkit connect /tmp/echo.sock`,
		Version:       version(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetVersionTemplate("tcpkit {{.Version}}\n")
	root.AddCommand(a.echoCommand(), a.connectCommand(), a.forwardCommand(), a.listenCommand(), a.benchCommand(), a.versionCommand())
	return root
}

// exitErr is an error that ends the command with a given exit code. Its
// message, if any, is printed as one line after the command's name.
type exitErr struct {
	code int
	msg  string
}

func (e *exitErr) Error() string { return e.msg }

// failf returns an exitErr with exitError and a formatted message.
func failf(format string, args ...any) error {
	return &exitErr{code: exitError, msg: fmt.Sprintf(format, args...)}
}

// oneLine folds a message onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// subscribe returns the channel that stop signals arrive on.
func (a *app) subscribe() (<-chan os.Signal, func()) {
	if a.signals != nil {
		return a.signals()
	}
	c := make(chan os.Signal, 2)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	return c, func() { signal.Stop(c) }
}

// signalExitCode is the exit status a shell reports for a process killed by
// s: 128 plus the signal number.
func signalExitCode(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return exitError
}

// addrString writes a bound address in tcpkit's address grammar, so that it
// can be pasted into tcpkit connect.
func addrString(a net.Addr) string {
	if a.Network() != "unix" {
		return a.String()
	}
	if strings.Contains(a.String(), "/") {
		return a.String()
	}
	return "unix:" + a.String()
}
