package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBroadcastChunking(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, addr string) {
		_, a := startRoom(t, addr, DefaultMaxLine, DefaultMaxBuffered)
		ann, bob, cat := connect(t, a), connect(t, a), connect(t, a)
		ann.expect(t, "* "+bob.name+" joined", "* "+cat.name+" joined")
		bob.expect(t, "* "+cat.name+" joined")

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
				ann.send(t, tc.chunks...)
				for _, c := range []*client{bob, cat} {
					for _, w := range tc.want {
						c.expect(t, ann.name+": "+w)
					}
				}
				// ann gets nothing back: the next line it reads is bob's.
				ann.sync(t, bob, "sync "+tc.name)
				cat.expect(t, bob.name+": sync "+tc.name)
			})
		}
	})
}

// connectAll connects n clients to the room at addr, and reads the joins
// of those who came after each.
func connectAll(t *testing.T, addr net.Addr, n int) []*client {
	t.Helper()
	var cs []*client
	for range n {
		cs = append(cs, connect(t, addr))
	}
	for i, c := range cs {
		for _, later := range cs[i+1:] {
			c.expect(t, "* "+later.name+" joined")
		}
	}
	return cs
}

// A heard is a line that a client received: line n of cs[talker].
type heard struct{ talker, n int }

// chatter has each client of cs send lines lines, "line N of I" where I is
// its index in cs, all at once and each in random chunks, while each reads
// (len(cs)-1)*lines lines. It returns the lines each client read, in the
// order it read them.
//
// It fails the test at once if a client reads a line that is not "NAME:
// line N of I" with NAME the name of cs[I], one of its own lines, or a line
// out of its talker's order (lost, repeated or overtaken); and if the whole
// does not finish within timeout, or if more lines follow. So each client
// gets every other client's lines exactly once, in the order they were
// sent, and none of its own.
func chatter(t *testing.T, cs []*client, lines int) [][]heard {
	t.Helper()
	deadline := time.Now().Add(timeout)
	got := make([][]heard, len(cs))
	errs := make(chan error, 2*len(cs)) // room for one error per goroutine
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range cs {
		c.nc.SetDeadline(deadline) // bounds every Read and Write below
		wg.Go(func() {             // talk
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			var stream []byte
			for n := range lines {
				stream = fmt.Appendf(stream, "line %d of %d\n", n, i)
			}
			<-start // closed as soon as every goroutine is started
			for len(stream) > 0 {
				k := min(1+rng.IntN(100), len(stream))
				if _, err := c.nc.Write(stream[:k]); err != nil {
					errs <- fmt.Errorf("%s: %v", c.name, err)
					return
				}
				stream = stream[k:]
				// A pause, so that the server reads the talkers' lines
				// interleaved rather than each talker's in one go.
				time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
			}
		})
		wg.Go(func() { // listen
			next := make([]int, len(cs)) // the next line number from each talker
			for range (len(cs) - 1) * lines {
				s, err := c.r.ReadString('\n')
				if err != nil {
					errs <- fmt.Errorf("%s: %q, %v after %d lines", c.name, s, err, len(got[i]))
					return
				}
				var from string
				var h heard
				if _, err := fmt.Sscanf(s, "%s line %d of %d\n", &from, &h.n, &h.talker); err != nil ||
					h.talker < 0 || h.talker >= len(cs) || h.n < 0 || h.n >= lines {
					errs <- fmt.Errorf("%s: unexpected line %q", c.name, s)
					return
				}
				switch {
				case h.talker == i || from == c.name+":":
					errs <- fmt.Errorf("%s: got its own line back: %q", c.name, s)
					return
				case from != cs[h.talker].name+":":
					errs <- fmt.Errorf("%s: line %q under the wrong name", c.name, s)
					return
				case h.n != next[h.talker]:
					errs <- fmt.Errorf("%s: line %q, want line %d of %d", c.name, s, next[h.talker], h.talker)
					return
				}
				next[h.talker]++
				got[i] = append(got[i], h)
			}
		})
	}
	close(start)
	// Every Read and Write ends by the deadline: waiting longer is a
	// backstop.
	waitAll(t, &wg, 2*timeout, func() {
		for _, c := range cs {
			c.nc.Close()
		}
	})
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	// Nothing more came, such as a line twice: the next line each client
	// reads is one sent now.
	for k := range min(2, len(cs)) {
		cs[k].send(t, "done\n")
		for j, c := range cs {
			if j != k {
				c.expect(t, cs[k].name+": done")
			}
		}
	}
	return got
}

// TestExactlyOnceInOrder has several clients talk at once, each in random
// chunks, and checks that every client gets every other client's lines
// exactly once and in order, and none of its own.
func TestExactlyOnceInOrder(t *testing.T) {
	const talkers, lines = 4, 300
	forEachNetwork(t, func(t *testing.T, addr string) {
		room, a := startRoom(t, addr, 64, DefaultMaxBuffered)
		cs := connectAll(t, a, talkers)
		if room.Len() != talkers {
			t.Fatalf("room has %d members", room.Len())
		}
		chatter(t, cs, lines) // which checks each line as it comes
	})
}

// TestSameOrderForEveryone has several clients talk at once and checks that
// they all get the lines in one and the same order: any two clients get
// the lines they both get (those of the others) in the same order, and one
// order of all the lines fits what every client got and the order in which
// each talker sent its own.
func TestSameOrderForEveryone(t *testing.T) {
	const talkers, lines = 5, 200
	forEachNetwork(t, func(t *testing.T, addr string) {
		_, a := startRoom(t, addr, 64, DefaultMaxBuffered)
		cs := connectAll(t, a, talkers)
		got := chatter(t, cs, lines)
		say := func(h heard) string {
			return fmt.Sprintf("%q", fmt.Sprintf("%s: line %d of %d", cs[h.talker].name, h.n, h.talker))
		}

		// Some lines must have come in between another talker's, or the
		// test shows nothing about order.
		switches := 0
		for _, hs := range got {
			for k := 1; k < len(hs); k++ {
				if hs[k].talker != hs[k-1].talker {
					switches++
				}
			}
		}
		t.Logf("%d changes of talker in what the %d clients read", switches, talkers)
		if switches == 0 {
			t.Fatal("the talkers' lines never interleaved")
		}

		for i := range cs {
			for j := i + 1; j < len(cs); j++ {
				// The lines both i and j get: those of the others.
				common := func(hs []heard) []heard {
					return slices.DeleteFunc(slices.Clone(hs), func(h heard) bool { return h.talker == i || h.talker == j })
				}
				a, b := common(got[i]), common(got[j])
				k := 0
				for k < len(a) && k < len(b) && a[k] == b[k] {
					k++
				}
				switch {
				case k < len(a) && k < len(b):
					t.Errorf("%s and %s got %d lines of the others in the same order, then %s got %s, %s got %s",
						cs[i].name, cs[j].name, k, cs[i].name, say(a[k]), cs[j].name, say(b[k]))
				case len(a) != len(b):
					t.Errorf("%s and %s got %d and %d lines of the others", cs[i].name, cs[j].name, len(a), len(b))
				}
			}
		}
		if t.Failed() {
			return
		}

		// One order for all: the graph whose edges are "came right before,
		// for some client" and "was sent right before" must have no cycle.
		// Kahn's algorithm sorts it, or leaves the lines on cycles.
		id := func(h heard) int { return h.talker*lines + h.n }
		next := make([][]int, talkers*lines)
		before := make([]int, talkers*lines) // edges into each line
		edge := func(from, to heard) {
			next[id(from)] = append(next[id(from)], id(to))
			before[id(to)]++
		}
		for _, hs := range got {
			for k := 1; k < len(hs); k++ {
				edge(hs[k-1], hs[k])
			}
		}
		for talker := range talkers {
			for n := 1; n < lines; n++ {
				edge(heard{talker, n - 1}, heard{talker, n})
			}
		}
		var ready []int
		for v, d := range before {
			if d == 0 {
				ready = append(ready, v)
			}
		}
		sorted := 0
		for len(ready) > 0 { // each line is ready once: at most talkers*lines rounds
			v := ready[len(ready)-1]
			ready = ready[:len(ready)-1]
			sorted++
			for _, w := range next[v] {
				if before[w]--; before[w] == 0 {
					ready = append(ready, w)
				}
			}
		}
		if sorted != talkers*lines {
			t.Errorf("no one order of the lines fits what every client got: %d of %d lines are on a cycle or after one", talkers*lines-sorted, talkers*lines)
		}
	})
}

func TestNick(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, addr string) {
		_, a := startRoom(t, addr, DefaultMaxLine, DefaultMaxBuffered)
		ann, bob := connect(t, a), connect(t, a)
		ann.expect(t, "* "+bob.name+" joined")
		old := ann.name

		ann.send(t, "/nick alice\n")
		ann.expect(t, "* you are now alice")
		bob.expect(t, "* "+old+" is now alice")
		ann.name = "alice"
		bob.sync(t, ann, "hi") // "alice: hi"

		for _, bad := range []string{"/nick", "/nick two words", "/nick " + strings.Repeat("x", 33), "/nick semi;colon"} {
			ann.send(t, bad+"\n")
			ann.expect(t, "* usage: /nick NAME, where NAME is 1 to 32 letters, digits, '-', '_' or '.'")
		}
		bob.sync(t, ann, "still alice") // bob heard nothing of the bad tries

		ann.send(t, "/nickname is not a command\n")
		bob.expect(t, "alice: /nickname is not a command")
	})
}

func TestJoinLeave(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, addr string) {
		room, a := startRoom(t, addr, DefaultMaxLine, DefaultMaxBuffered)
		ann := connect(t, a)
		bob := connect(t, a)
		ann.expect(t, "* "+bob.name+" joined")
		bob.send(t, "/nick bob\n")
		bob.expect(t, "* you are now bob")
		ann.expect(t, "* "+bob.name+" is now bob")
		bob.nc.Close()
		ann.expect(t, "* bob left")

		cat := connect(t, a)
		ann.expect(t, "* "+cat.name+" joined")
		if room.Len() != 2 {
			t.Errorf("room has %d members, want 2", room.Len())
		}
		// A client that half-closes has its last line, without an LF,
		// delivered before it leaves.
		cat.send(t, "bye without LF")
		cat.closeWrite(t)
		ann.expect(t, cat.name+": bye without LF", "* "+cat.name+" left")
	})
}

func TestLineTooLong(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, addr string) {
		const maxLine = 64
		_, a := startRoom(t, addr, maxLine, DefaultMaxBuffered)
		ann, bob, cat := connect(t, a), connect(t, a), connect(t, a)
		ann.expect(t, "* "+bob.name+" joined", "* "+cat.name+" joined")
		bob.expect(t, "* "+cat.name+" joined")

		// A line of exactly maxLine bytes, LF included, is fine.
		ann.send(t, strings.Repeat("x", maxLine-1)+"\n")
		bob.expect(t, ann.name+": "+strings.Repeat("x", maxLine-1))
		cat.expect(t, ann.name+": "+strings.Repeat("x", maxLine-1))

		// One more byte: ann's earlier line still goes out, then ann gets
		// an error line and the end of the connection.
		ann.send(t, "last words\n"+strings.Repeat("y", 40), strings.Repeat("y", 30)+"\nnever sent\n")
		ann.eof(t, "* error: line too long (the limit is 64 bytes, line end included); goodbye")
		ann.nc.Close()
		for _, c := range []*client{bob, cat} {
			c.expect(t, ann.name+": last words", "* "+ann.name+" left")
		}
		bob.sync(t, cat, "we carry on")
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
		talker.expect(t, "* "+reader.name+" joined")
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
			if time.Since(start) > timeout {
				t.Fatalf("after %d batches of 16 KB, %s is still connected", batch, sleepy.name)
			}
			var buf bytes.Buffer
			for i := range 16 {
				fmt.Fprintf(&buf, "%d.%d %s\n", batch, i, line)
			}
			talker.send(t, buf.String())
			for i := 0; i < 16; {
				got := reader.line(t)
				if got == "* "+sleepy.name+" left" {
					if left {
						t.Fatalf("reader got %q twice", got)
					}
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
		talker.expect(t, "* "+sleepy.name+" left")
		reader.sync(t, talker, "done")
		talker.sync(t, reader, "done too")
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
			lineWriter(func(s string) {
				select {
				case listening <- s:
				default: // a second line: the test has failed already
				}
			}), &stderr)
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
	case <-time.After(timeout):
		t.Fatalf("run printed nothing within %v; stderr:\n%s", timeout, stderr.String())
	}
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ann, bob := connect(t, tcp), connect(t, tcp)
	ann.expect(t, "* "+bob.name+" joined")
	bob.sync(t, ann, "hello")
	ann.send(t, strings.Repeat("x", 40)+"\n") // over -max-line 32
	ann.eof(t, "* error: line too long (the limit is 32 bytes, line end included); goodbye")
	ann.nc.Close()
	bob.expect(t, "* "+ann.name+" left")

	cancel() // as SIGINT does
	bob.eof(t, "* server shutting down; goodbye")
	bob.nc.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(timeout):
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
