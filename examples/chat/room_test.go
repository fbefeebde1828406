package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBroadcastChunking(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, addr string) {
		_, a := startRoom(t, addr, DefaultMaxLine, DefaultMaxBuffered)
		ann, bob, cat := connect(t, a), connect(t, a), connect(t, a)
		ann.expect("* "+bob.name+" joined", "* "+cat.name+" joined")
		bob.expect("* " + cat.name + " joined")

		cases := []struct {
			name   string
			chunks []string
			want   []string
		}{
			{name: "lines split across writes", chunks: []string{"hel", "lo\nwor", "ld\n"}, want: []string{"hello", "world"}},
			{name: "several lines in one write", chunks: []string{"one\ntwo\nthree\n"}, want: []string{"one", "two", "three"}},
			{name: "CRLF, cut between CR and LF", chunks: []string{"telnet\r", "\nstyle\r\n"}, want: []string{"telnet", "style"}},
			{name: "byte by byte", chunks: strings.Split("a b\n", ""), want: []string{"a b"}},
			{name: "empty line", chunks: []string{"\n"}, want: []string{""}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ann.send(tc.chunks...)
				for _, c := range []*client{bob, cat} {
					for _, w := range tc.want {
						c.expect(ann.name + ": " + w)
					}
				}
				// ann gets nothing back: the next line it reads is bob's.
				ann.sync(bob, "sync "+tc.name)
				cat.expect(bob.name + ": sync " + tc.name)
			})
		}
	})
}

// TestExactlyOnceInOrder has several clients talk at once, each in random
// chunks, and checks that every client gets every other client's lines
// exactly once and in order, and none of its own.
func TestExactlyOnceInOrder(t *testing.T) {
	const talkers, lines = 4, 300
	forEachNetwork(t, func(t *testing.T, addr string) {
		room, a := startRoom(t, addr, 64, DefaultMaxBuffered)
		var cs []*client
		for range talkers {
			cs = append(cs, connect(t, a))
		}
		for i, c := range cs { // the joins of those who came later
			for _, later := range cs[i+1:] {
				c.expect("* " + later.name + " joined")
			}
		}
		if room.Len() != talkers {
			t.Fatalf("room has %d members", room.Len())
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2*talkers)
		for i, c := range cs {
			wg.Go(func() { // talk
				rng := rand.New(rand.NewPCG(uint64(i), 1))
				var stream []byte
				for n := range lines {
					stream = fmt.Appendf(stream, "line %d of %d\n", n, i)
				}
				for len(stream) > 0 {
					k := min(1+rng.IntN(100), len(stream))
					if _, err := c.nc.Write(stream[:k]); err != nil {
						errs <- err
						return
					}
					stream = stream[k:]
				}
			})
			wg.Go(func() { // listen
				next := make(map[string]int) // the next line number from each sender
				for range (talkers - 1) * lines {
					c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
					s, err := c.r.ReadString('\n')
					if err != nil {
						errs <- fmt.Errorf("%s: %v after %v", c.name, err, next)
						return
					}
					var from string
					var n, sender int
					if _, err := fmt.Sscanf(s, "%s line %d of %d\n", &from, &n, &sender); err != nil {
						errs <- fmt.Errorf("%s: unexpected line %q", c.name, s)
						return
					}
					switch {
					case sender == i || from == c.name+":":
						errs <- fmt.Errorf("%s: got its own line back: %q", c.name, s)
						return
					case from != cs[sender].name+":":
						errs <- fmt.Errorf("%s: line %q under the wrong name", c.name, s)
						return
					case n != next[from]:
						errs <- fmt.Errorf("%s: line %q, want line %d from %s", c.name, s, next[from], from)
						return
					}
					next[from]++
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestNick(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, addr string) {
		_, a := startRoom(t, addr, DefaultMaxLine, DefaultMaxBuffered)
		ann, bob := connect(t, a), connect(t, a)
		ann.expect("* " + bob.name + " joined")
		old := ann.name

		ann.send("/nick alice\n")
		ann.expect("* you are now alice")
		bob.expect("* " + old + " is now alice")
		ann.name = "alice"
		bob.sync(ann, "hi") // "alice: hi"

		for _, bad := range []string{"/nick", "/nick two words", "/nick " + strings.Repeat("x", 33), "/nick semi;colon"} {
			ann.send(bad + "\n")
			ann.expect("* usage: /nick NAME, where NAME is 1 to 32 letters, digits, '-', '_' or '.'")
		}
		bob.sync(ann, "still alice") // bob heard nothing of the bad tries

		ann.send("/nickname is not a command\n")
		bob.expect("alice: /nickname is not a command")
	})
}

func TestJoinLeave(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, addr string) {
		room, a := startRoom(t, addr, DefaultMaxLine, DefaultMaxBuffered)
		ann := connect(t, a)
		bob := connect(t, a)
		ann.expect("* " + bob.name + " joined")
		bob.send("/nick bob\n")
		bob.expect("* you are now bob")
		ann.expect("* " + bob.name + " is now bob")
		bob.nc.Close()
		ann.expect("* bob left")

		cat := connect(t, a)
		ann.expect("* " + cat.name + " joined")
		if room.Len() != 2 {
			t.Errorf("room has %d members, want 2", room.Len())
		}
		// A client that half-closes has its last line, without an LF,
		// delivered before it leaves.
		cat.send("bye without LF")
		cat.nc.(interface{ CloseWrite() error }).CloseWrite()
		ann.expect(cat.name+": bye without LF", "* "+cat.name+" left")
	})
}

func TestLineTooLong(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, addr string) {
		const maxLine = 64
		_, a := startRoom(t, addr, maxLine, DefaultMaxBuffered)
		ann, bob, cat := connect(t, a), connect(t, a), connect(t, a)
		ann.expect("* "+bob.name+" joined", "* "+cat.name+" joined")
		bob.expect("* " + cat.name + " joined")

		// A line of exactly maxLine bytes, LF included, is fine.
		ann.send(strings.Repeat("x", maxLine-1) + "\n")
		bob.expect(ann.name + ": " + strings.Repeat("x", maxLine-1))
		cat.expect(ann.name + ": " + strings.Repeat("x", maxLine-1))

		// One more byte: ann's earlier line still goes out, then ann gets
		// an error line and the end of the connection.
		ann.send("last words\n"+strings.Repeat("y", 40), strings.Repeat("y", 30)+"\nnever sent\n")
		ann.eof("* error: line too long (the limit is 64 bytes, line end included); goodbye")
		ann.nc.Close()
		for _, c := range []*client{bob, cat} {
			c.expect(ann.name+": last words", "* "+ann.name+" left")
		}
		bob.sync(cat, "we carry on")
	})
}

// TestSlowConsumer checks that a client that stops reading is
// disconnected, while the others keep receiving everything, in order.
func TestSlowConsumer(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, addr string) {
		const maxBuffered = 64 << 10
		var logs syncWriter
		_, a := startRoomLog(t, addr, DefaultMaxLine, maxBuffered, slog.New(slog.NewTextHandler(&logs, nil)))
		sleepy, talker, reader := connect(t, a), connect(t, a), connect(t, a)
		talker.expect("* " + reader.name + " joined")
		// sleepy reads no more from here on; a small receive buffer makes
		// the server's queue for it fill sooner.
		switch nc := sleepy.nc.(type) {
		case *net.TCPConn:
			nc.SetReadBuffer(4 << 10)
		case *net.UnixConn:
			nc.SetReadBuffer(4 << 10)
		}

		line := strings.Repeat("z", 1000)
		left := false
		start := time.Now()
		batch := 0
		for ; !left || batch < 10; batch++ {
			if time.Since(start) > 20*time.Second {
				t.Fatalf("after %d batches of 16 KB, %s is still connected", batch, sleepy.name)
			}
			var buf bytes.Buffer
			for i := range 16 {
				fmt.Fprintf(&buf, "%d.%d %s\n", batch, i, line)
			}
			talker.send(buf.String())
			for i := 0; i < 16; {
				got := reader.line()
				if got == "* "+sleepy.name+" left" {
					left = true
					continue
				}
				if want := fmt.Sprintf("%s: %d.%d %s", talker.name, batch, i, line); got != want {
					t.Fatalf("reader got %.40q..., want %.40q...", got, want)
				}
				i++
			}
		}
		t.Logf("%s disconnected; %d batches of 16 KB delivered in %v", sleepy.name, batch, time.Since(start))
		talker.expect("* " + sleepy.name + " left")
		reader.sync(talker, "done")
		talker.sync(reader, "done too")
		if want := fmt.Sprintf("name=%s err=\"tcpkit: slow consumer", sleepy.name); !strings.Contains(logs.String(), want) {
			t.Errorf("log has no %s; log:\n%s", want, logs.String())
		}
	})
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listening := make(chan string, 1)
	var stderr syncWriter
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-max-line", "32", "-max-buffered", "100000", "127.0.0.1:0"},
			lineWriter(func(s string) { listening <- s }), &stderr)
	}()
	var addr string
	select {
	case s := <-listening:
		var ok bool
		if addr, ok = strings.CutPrefix(s, "listening on "); !ok {
			t.Fatalf("stdout: %q", s)
		}
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ann, bob := connect(t, tcp), connect(t, tcp)
	ann.expect("* " + bob.name + " joined")
	bob.sync(ann, "hello")
	ann.send(strings.Repeat("x", 40) + "\n") // over -max-line 32
	ann.eof("* error: line too long (the limit is 32 bytes, line end included); goodbye")
	ann.nc.Close()
	bob.expect("* " + ann.name + " left")

	cancel() // as SIGINT does
	bob.eof("* server shutting down; goodbye")
	bob.nc.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

func TestRunErrors(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{name: "unknown flag", args: []string{"-nope"}, want: "flag provided but not defined", usage: true},
		{name: "two addresses", args: []string{"a:1", "b:2"}, want: "too many arguments", usage: true},
		{name: "tiny max-line", args: []string{"-max-line", "1"}, want: "-max-line must be at least 2", usage: true},
		{name: "bad address", args: []string{"127.0.0.1:99999"}, want: "bad address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			err := run(context.Background(), tc.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run(%q) = %v, want an error with %q", tc.args, err, tc.want)
			}
			if _, ok := err.(usageError); ok != tc.usage {
				t.Errorf("run(%q) = %T, usage error: %v, want %v", tc.args, err, ok, tc.usage)
			}
		})
	}
}

// lineWriter is an io.Writer that calls f with each line written to it.
type lineWriter func(s string)

func (f lineWriter) Write(p []byte) (int, error) {
	for _, s := range strings.Split(strings.TrimSuffix(string(p), "\n"), "\n") {
		f(s)
	}
	return len(p), nil
}

// syncWriter is a strings.Builder safe for concurrent use, for logs.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
