package main

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/tcpkit/tcpkit"
)

// TestListenErrorMessages checks the one line of each kind of bind failure,
// including those a test running as root cannot cause for real.
func TestListenErrorMessages(t *testing.T) {
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errno)}
	}
	tests := []struct {
		name string
		addr string
		sub  string // the one address of several that failed
		err  error
		want string
	}{
		{name: "permission", addr: ":80", err: opErr(syscall.EACCES),
			want: "cannot listen on :80: permission denied"},
		{name: "in use, one of several", addr: "localhost:8124", sub: "[::1]:8124", err: opErr(syscall.EADDRINUSE),
			want: "cannot listen on localhost:8124 ([::1]:8124): address already in use"},
		{name: "bad address", addr: "x:y", err: &tcpkit.AddrError{Addr: "x:y", Reason: "port \"y\" is not a number"},
			want: `cannot listen on x:y: bad address: port "y" is not a number`},
		{name: "unknown host", addr: "nohost.invalid:1",
			err:  &net.OpError{Op: "listen", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "nohost.invalid", IsNotFound: true}},
			want: "cannot listen on nohost.invalid:1: no such host nohost.invalid"},
		{name: "timeout", addr: "h:1", err: &net.OpError{Op: "listen", Net: "tcp", Err: errors.New("i/o timeout")},
			want: "cannot listen on h:1: i/o timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := listenError(tt.addr, tt.sub, tt.err)
			var ee *exitErr
			if !errors.As(err, &ee) || ee.code != exitError {
				t.Fatalf("listenError returned %#v, want an exitErr with code %d", err, exitError)
			}
			if ee.msg != tt.want {
				t.Errorf("got %q, want %q", ee.msg, tt.want)
			}
		})
	}
}
