package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestForwardTargetResetAfterEnd: the target answers and closes; bytes the
// client sends after that are reset by the target. Direct, the client
// would see that reset; through tcpkit forward it saw a clean end, because
// the connection to the target, half-open after the target's FIN, never
// looked at its socket again (issue 17, defect 2). Now the reset travels.
func TestForwardTargetResetAfterEnd(t *testing.T) {
	forEachEngine(t, forwardTargetResetAfterEnd)
}

func forwardTargetResetAfterEnd(t *testing.T, engine string) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	go func() {
		nc, err := target.Accept()
		if err != nil {
			return
		}
		nc.SetDeadline(time.Now().Add(waitLimit))
		bufio.NewReader(nc).ReadString('\n')
		io.WriteString(nc, "answer\n")
		nc.Close() // and reads nothing more: later bytes get a reset
	}()
	fwd := startCommand(t, "forward", "--engine", engine, "127.0.0.1:0", target.Addr().String())
	c, err := net.DialTimeout("tcp", fwd.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLimit))
	io.WriteString(c, "request\n")
	got, err := io.ReadAll(c) // the answer, then the target's end
	if err != nil || string(got) != "answer\n" {
		t.Fatalf("got %q, %v", got, err)
	}
	// More bytes, which the target resets; then, a moment later, the
	// client's own end. Direct, that shutdown fails (ENOTCONN): the
	// connection is gone. Through forward it must fail too, and not be
	// taken as the start of an orderly close.
	io.WriteString(c, "more\n")
	time.Sleep(200 * time.Millisecond)
	if err := c.(*net.TCPConn).CloseWrite(); !errors.Is(err, syscall.ENOTCONN) {
		rest, rerr := io.ReadAll(c)
		t.Errorf("the client's end after the target's reset: %v (then read %q, %v); want ENOTCONN, the reset passed on", err, rest, rerr)
	}
}
