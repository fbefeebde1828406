package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// faultSize is the message size of the fault tests; the faulty servers
// count in messages of this size.
const faultSize = 64

// runFaulty runs cfg against a server that handles each connection with
// handle, and returns the result.
func runFaulty(t *testing.T, cfg Config, handle func(c net.Conn)) *Result {
	t.Helper()
	cfg.Addr = startRaw(t, handle)
	cfg.Size = faultSize
	if cfg.Duration == 0 {
		cfg.Duration = 200 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// wantOnly fails t unless res counts errors of kind k, and of no other kind.
func wantOnly(t *testing.T, res *Result, k ErrorKind, sample string) {
	t.Helper()
	wantMostly(t, res, k, nil, sample)
}

// wantMostly is wantOnly, but for errors of kind also, which may come too:
// a server that closes while the client still sends resets what comes
// after, and the reset may reach the client before it has read the end
// (tcpkit reports a reset as soon as it sees one).
func wantMostly(t *testing.T, res *Result, k ErrorKind, also *ErrorKind, sample string) {
	t.Helper()
	other := int64(0)
	if also != nil {
		other = res.Errors[*also]
	}
	if res.Errors[k] == 0 || res.Errors.Total() != res.Errors[k]+other || other > res.Errors[k] {
		t.Fatalf("errors %v, want %v only; samples %q", res.Errors, k, res.ErrorSamples)
	}
	if !slices.ContainsFunc(res.ErrorSamples, func(s string) bool { return strings.Contains(s, sample) }) {
		t.Errorf("samples %q, want one to mention %q", res.ErrorSamples, sample)
	}
	if res.Messages == 0 {
		t.Errorf("no message got through before the fault")
	}
}

// TestCorrupt: a server that flips one payload byte of message 50 on each
// connection is caught as corrupt, in every message mode.
func TestCorrupt(t *testing.T) {
	flip := func(c net.Conn) {
		const at = 50*faultSize + 30
		echoWith(c, func(p []byte, off int) ([]byte, bool) {
			if off <= at && at < off+len(p) {
				p[at-off] ^= 0x10
			}
			return p, false
		})
	}
	for _, mode := range []Mode{PingPong, Pipeline, Stream} {
		t.Run(string(mode), func(t *testing.T) {
			res := runFaulty(t, Config{Mode: mode, Conns: 2}, flip)
			wantOnly(t, res, Corrupt, "payload byte 30 of message 50")
		})
	}
	t.Run("connect", func(t *testing.T) {
		res := runFaulty(t, Config{Mode: Connect, Conns: 2}, func(c net.Conn) {
			echoWith(c, func(p []byte, off int) ([]byte, bool) {
				p[len(p)-1] ^= 1
				return p, false
			})
		})
		if res.Errors[Corrupt] == 0 {
			t.Errorf("errors %v, want corrupt", res.Errors)
		}
	})
}

// TestReordered: a server that swaps messages 20 and 21 of each connection
// is caught as reordering, in pipeline and stream modes (ping-pong has one
// message in flight: nothing to reorder).
func TestReordered(t *testing.T) {
	swap := func(c net.Conn) {
		msg := make([]byte, faultSize)
		var held []byte
		for i := 0; ; i++ {
			if _, err := io.ReadFull(c, msg); err != nil {
				return
			}
			switch i {
			case 20:
				held = append([]byte(nil), msg...)
				continue
			case 21:
				msg = append(msg, held...)
			}
			if _, err := c.Write(msg); err != nil {
				return
			}
			msg = msg[:faultSize]
		}
	}
	for _, mode := range []Mode{Pipeline, Stream} {
		t.Run(string(mode), func(t *testing.T) {
			res := runFaulty(t, Config{Mode: mode, Conns: 2, Depth: 4}, swap)
			wantOnly(t, res, Reordered, "message 20 came back after")
		})
	}
}

// TestLostMessage: a server that drops message 20 of each connection, and
// carries on, is caught as losing it in pipeline mode.
func TestLostMessage(t *testing.T) {
	res := runFaulty(t, Config{Mode: Pipeline, Conns: 1, Depth: 4}, func(c net.Conn) {
		msg := make([]byte, faultSize)
		for i := 0; ; i++ {
			if _, err := io.ReadFull(c, msg); err != nil {
				return
			}
			if i == 20 {
				continue
			}
			if _, err := c.Write(msg); err != nil {
				return
			}
		}
	})
	wantOnly(t, res, Lost, "message 20 never came back")
}

// TestTruncated: a server that echoes part of message 30, then closes, is
// caught as a short echo; one that closes at a message boundary with
// messages outstanding, as lost messages.
func TestTruncated(t *testing.T) {
	// The server ends its side (FIN) and reads on: closing with unread
	// input would reset the connection instead.
	closeAfter := func(limit int) func(c net.Conn) {
		return func(c net.Conn) {
			echoWith(c, func(p []byte, off int) ([]byte, bool) {
				if off+len(p) >= limit {
					return p[:limit-off], true
				}
				return p, false
			})
			c.(*net.TCPConn).CloseWrite()
			drain(c)
		}
	}
	for _, mode := range []Mode{PingPong, Pipeline, Stream} {
		t.Run(string(mode)+"/short", func(t *testing.T) {
			res := runFaulty(t, Config{Mode: mode, Conns: 2}, closeAfter(30*faultSize+10))
			wantOnly(t, res, Short, "closed after 10 of the 64 bytes")
		})
		t.Run(string(mode)+"/lost", func(t *testing.T) {
			res := runFaulty(t, Config{Mode: mode, Conns: 2}, closeAfter(30*faultSize))
			wantOnly(t, res, Lost, "not echoed")
		})
	}
}

// TestReset: a server that resets the connection after 20 messages is
// caught as a reset.
func TestReset(t *testing.T) {
	res := runFaulty(t, Config{Mode: PingPong, Conns: 2}, func(c net.Conn) {
		echoWith(c, func(p []byte, off int) ([]byte, bool) {
			if off >= 20*faultSize {
				c.(*net.TCPConn).SetLinger(0)
				return nil, true
			}
			return p, false
		})
	})
	wantOnly(t, res, Reset, "reset")
}

// TestTimeout: a server that stops echoing after 5 messages, but keeps the
// connection open, is caught as a timeout.
func TestTimeout(t *testing.T) {
	res := runFaulty(t, Config{Mode: PingPong, Conns: 1, Duration: 100 * time.Millisecond, Timeout: 200 * time.Millisecond},
		func(c net.Conn) {
			echoWith(c, func(p []byte, off int) ([]byte, bool) {
				if off >= 5*faultSize {
					return nil, true
				}
				return p, false
			})
			drain(c)
		})
	wantOnly(t, res, Timeout, "timeout")
}

// TestRefused: with nothing listening, Run fails at once with the refusal.
func TestRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Run(context.Background(), Config{Addr: addr, Conns: 3, Duration: time.Minute}, nil)
	var f *failure
	if !errors.Is(err, ErrNoConnection) || !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &f) || f.kind != Refused {
		t.Fatalf("err = %v, want ErrNoConnection, refused", err)
	}
}

// TestExtraBytes: a server that sends more than the echo is caught at the
// orderly end of the connection.
func TestExtraBytes(t *testing.T) {
	res := runFaulty(t, Config{Mode: PingPong, Conns: 1, Count: 10, Duration: time.Second}, func(c net.Conn) {
		echoWith(c, func(p []byte, off int) ([]byte, bool) { return p, false })
		c.Write([]byte("bye\n"))
	})
	wantOnly(t, res, Corrupt, "4 bytes came after the last echo")
}

// TestStalled: a run bounded by Count alone, against a server that stops
// echoing, ends after a Timeout or so without progress instead of waiting
// for ever.
func TestStalled(t *testing.T) {
	addr := startRaw(t, func(c net.Conn) { drain(c) })
	start := time.Now()
	res, err := Run(context.Background(), Config{Addr: addr, Conns: 2, Count: 1000, Timeout: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Stalled || res.Errors[Timeout] == 0 || time.Since(start) > 3*time.Second {
		t.Errorf("stalled %v, errors %v after %v", res.Stalled, res.Errors, time.Since(start))
	}
}
