package codec

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpkit/tcpkit"
)

// networks are the transports the connection tests run over.
var networks = []struct {
	name string
	addr func(t *testing.T) string
}{
	{name: "tcp", addr: func(*testing.T) string { return "127.0.0.1:0" }},
	{name: "unix", addr: func(t *testing.T) string { return filepath.Join(t.TempDir(), "s.sock") }},
}

// serve runs a tcpkit.Server with handler h on addr until the test ends,
// and returns the network and address to dial.
func serve(t *testing.T, addr string, h tcpkit.Handler) (network, address string) {
	t.Helper()
	ln, err := tcpkit.Listen(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := tcpkit.NewServer(h)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	return ln.Addr().Network(), ln.Addr().String()
}

// dial connects to the server and closes the connection when the test
// ends. Every read and write must finish within 10 seconds.
func dial(t *testing.T, network, address string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout(network, address, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { nc.Close() })
	return nc
}

// A codecCase is a framing with the messages to send through it.
type codecCase struct {
	name  string
	split bufio.SplitFunc
	enc   Encoder
	max   int
	msg   func(rng *rand.Rand) []byte // a message the codec can carry
}

func letters(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(rng.IntN(26))
	}
	return b
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

var codecCases = []codecCase{
	{name: "Lines", split: Lines(1024), enc: LinesEncoder(1024), max: 1024,
		msg: func(rng *rand.Rand) []byte { return letters(rng, rng.IntN(1000)) }},
	{name: "Delimited", split: Delimited([]byte("\r\n"), 1024), enc: DelimitedEncoder([]byte("\r\n"), 1024), max: 1024,
		msg: func(rng *rand.Rand) []byte { return letters(rng, rng.IntN(1000)) }},
	{name: "LengthPrefixed", split: LengthPrefixed(LengthPrefix{Size: 2}, 1024), enc: LengthPrefixedEncoder(LengthPrefix{Size: 2}, 1024), max: 1024,
		msg: func(rng *rand.Rand) []byte { return randomBytes(rng, rng.IntN(1000)) }},
	{name: "Fixed", split: Fixed(37), enc: FixedEncoder(37), max: 37,
		msg: func(rng *rand.Rand) []byte { return randomBytes(rng, 37) }},
}

// echoFramed is a handler that sends back each message it decodes,
// encoded again, and reports each connection's close error on closed.
func echoFramed(cc codecCase, closed chan<- error) tcpkit.Handler {
	return func(c *tcpkit.Conn) {
		var out []byte
		f := NewFramer(cc.split, cc.max, func(msg []byte) {
			var err error
			if out, err = cc.enc(out[:0], msg); err != nil {
				c.CloseWithError(err)
				return
			}
			c.Write(out)
		})
		f.Attach(c)
		if closed != nil {
			c.OnClose(func(err error) { closed <- err })
		}
	}
}

// TestAttachAwkwardChunks sends frames to an echo server over a real
// connection in chunks of many sizes, with pauses so that the server's data
// events see frames cut at many places, and checks that every frame comes
// back whole and in order.
func TestAttachAwkwardChunks(t *testing.T) {
	for _, n := range networks {
		for _, cc := range codecCases {
			t.Run(n.name+"/"+cc.name, func(t *testing.T) {
				network, address := serve(t, n.addr(t), echoFramed(cc, nil))
				nc := dial(t, network, address)
				rng := rand.New(rand.NewPCG(1, 2))
				var want [][]byte
				var stream []byte
				for range 200 {
					msg := cc.msg(rng)
					var err error
					if stream, err = cc.enc(stream, msg); err != nil {
						t.Fatal(err)
					}
					want = append(want, msg)
				}
				werr := make(chan error, 1)
				go func() {
					sizes := []int{1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597}
					for i, p := 0, stream; len(p) > 0; i++ {
						k := min(sizes[i%len(sizes)], len(p))
						if _, err := nc.Write(p[:k]); err != nil {
							werr <- err
							return
						}
						p = p[k:]
						if i%8 == 0 {
							time.Sleep(200 * time.Microsecond) // let the server read this chunk alone
						}
					}
					werr <- nil
				}()
				sc := bufio.NewScanner(nc)
				sc.Buffer(nil, cc.max)
				sc.Split(cc.split)
				for i, w := range want {
					if !sc.Scan() {
						t.Fatalf("echo %d: %v", i, sc.Err())
					}
					if !bytes.Equal(sc.Bytes(), w) {
						t.Fatalf("echo %d: got %q, want %q", i, sc.Bytes(), w)
					}
				}
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// roundTrip sends msg as one frame and checks that it comes back.
func roundTrip(t *testing.T, nc net.Conn, r *bufio.Reader, enc Encoder, msg string) {
	t.Helper()
	frame, err := enc(nil, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write(frame); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(frame))
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, frame) {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

func TestAttachTooLongClosesOnlyThatConnection(t *testing.T) {
	lp := LengthPrefix{Size: 4}
	cc := codecCase{split: LengthPrefixed(lp, 1024), enc: LengthPrefixedEncoder(lp, 1024), max: 1024}
	for _, n := range networks {
		t.Run(n.name, func(t *testing.T) {
			closed := make(chan error, 2)
			network, address := serve(t, n.addr(t), echoFramed(cc, closed))
			good, bad := dial(t, network, address), dial(t, network, address)
			goodR := bufio.NewReader(good)
			roundTrip(t, good, goodR, cc.enc, "before")

			// 4 GiB announced: refused with the header alone.
			if _, err := bad.Write([]byte{0xff, 0xff, 0xff, 0xff}); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-closed:
				if !errors.Is(err, ErrFrameTooLong) || !strings.Contains(err.Error(), "4294967295") {
					t.Errorf("close error %v, want ErrFrameTooLong with the sizes", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the connection that sent a 4 GiB header is still open")
			}
			if _, err := bad.Read(make([]byte, 1)); err == nil {
				t.Error("the bad client can still read")
			}

			roundTrip(t, good, goodR, cc.enc, "after")
			roundTrip(t, good, goodR, cc.enc, strings.Repeat("x", 1020))
			select {
			case err := <-closed:
				t.Fatalf("another connection closed: %v", err)
			default:
			}
		})
	}
}

// lineServer echoes lines as "echo: LINE" with a Framer whose Reply is an
// error line, and reports close errors on closed.
func lineServer(t *testing.T, addr string, linger time.Duration, closed chan<- error) (network, address string) {
	return serve(t, addr, func(c *tcpkit.Conn) {
		f := NewFramer(Lines(16), 16, func(line []byte) {
			c.Write(fmt.Appendf(nil, "echo: %s\n", line))
		})
		f.Reply = func(err error) []byte {
			if errors.Is(err, ErrFrameTooLong) {
				return []byte("error: line too long\n")
			}
			return []byte("error: " + err.Error() + "\n")
		}
		f.Linger = linger
		f.Attach(c)
		c.OnClose(func(err error) { closed <- err })
	})
}

func TestAttachReplyThenClose(t *testing.T) {
	for _, n := range networks {
		t.Run(n.name, func(t *testing.T) {
			closed := make(chan error, 1)
			network, address := lineServer(t, n.addr(t), time.Minute, closed)
			nc := dial(t, network, address)
			nc.Write([]byte("hi\n" + strings.Repeat("x", 40) + "\nafter\n"))
			got, err := io.ReadAll(nc) // the reply, then the server's FIN
			if err != nil || string(got) != "echo: hi\nerror: line too long\n" {
				t.Fatalf("read %q, %v", got, err)
			}
			nc.Close() // the peer ends: the server closes with the error
			select {
			case err := <-closed:
				if !errors.Is(err, ErrFrameTooLong) {
					t.Errorf("close error %v, want ErrFrameTooLong", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("not closed after the peer ended")
			}
		})
	}
}

func TestAttachReplyLinger(t *testing.T) {
	closed := make(chan error, 1)
	network, address := lineServer(t, "127.0.0.1:0", 50*time.Millisecond, closed)
	nc := dial(t, network, address)
	nc.Write([]byte(strings.Repeat("x", 40) + "\n"))
	start := time.Now()
	got, err := io.ReadAll(nc) // the server ends its side; we do not end ours
	if err != nil || string(got) != "error: line too long\n" {
		t.Fatalf("read %q, %v", got, err)
	}
	select {
	case err := <-closed:
		if !errors.Is(err, ErrFrameTooLong) {
			t.Errorf("close error %v, want ErrFrameTooLong", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("closed after %v; Linger is 50ms", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a peer that does not end holds the connection past Linger")
	}
}

func TestAttachEndOfInput(t *testing.T) {
	cases := []struct {
		name      string
		split     bufio.SplitFunc
		max       int
		reply     bool
		send      string
		wantMsgs  []string
		wantReply string
		wantErr   string // errClass of the close error
	}{
		{name: "final line", split: Lines(16), max: 16, send: "a\nb", wantMsgs: []string{"a", "b"}, wantErr: "ok"},
		{name: "truncated frame", split: Fixed(4), max: 4, send: "abcdef", wantMsgs: []string{"abcd"}, wantErr: "truncated"},
		{name: "truncated frame, with reply", split: Fixed(4), max: 4, reply: true, send: "abcdef",
			wantMsgs: []string{"abcd"}, wantReply: "bad frame\n", wantErr: "truncated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msgs := make(chan string, 10)
			closed := make(chan error, 1)
			network, address := serve(t, "127.0.0.1:0", func(c *tcpkit.Conn) {
				f := NewFramer(tc.split, tc.max, func(msg []byte) { msgs <- string(msg) })
				if tc.reply {
					f.Reply = func(error) []byte { return []byte("bad frame\n") }
				}
				f.Attach(c)
				c.OnClose(func(err error) { closed <- err; close(msgs) })
			})
			nc := dial(t, network, address)
			nc.Write([]byte(tc.send))
			nc.(interface{ CloseWrite() error }).CloseWrite()
			reply, err := io.ReadAll(nc)
			if err != nil || string(reply) != tc.wantReply {
				t.Errorf("reply %q, %v; want %q", reply, err, tc.wantReply)
			}
			select {
			case err := <-closed:
				if errClass(err) != tc.wantErr {
					t.Errorf("close error %v, want %s", err, tc.wantErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("not closed")
			}
			// msgs is closed right after the close error is sent.
			var got []string
			timeout := time.After(5 * time.Second)
		collect:
			for {
				select {
				case m, ok := <-msgs:
					if !ok {
						break collect
					}
					got = append(got, m)
				case <-timeout:
					t.Fatalf("messages %q, then no end of them", got)
				}
			}
			if !slices.Equal(got, tc.wantMsgs) {
				t.Errorf("messages %q, want %q", got, tc.wantMsgs)
			}
		})
	}
}
