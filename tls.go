package tcpkit

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultHandshakeTimeout bounds a TLS handshake when Server.HandshakeTimeout
// or Dialer.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 10 * time.Second

// maxHandshakeInput is how much ciphertext a connection reads ahead while
// its handshake runs; it stops reading there until the handshake has
// taken some.
const maxHandshakeInput = 256 << 10

// A tlsLayer is a connection's TLS, run over the bytes its engine reads and
// writes, on either engine: crypto/tls reads ciphertext from, and writes
// records to, a tlsTransport rather than the socket. The handshake runs on
// a goroutine of its own, blocking in the transport until the engine has
// read more; after it, the event goroutine decrypts what the engine reads
// as it reads it, and the transport reports "nothing more yet" with a
// temporary error, which crypto/tls does not keep.
type tlsLayer struct {
	c  *Conn
	tc *tls.Conn

	// The handshake's context, cancelled by abort: tls.Config callbacks
	// see it as ClientHelloInfo.Context (or CertificateRequestInfo's).
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	cond     sync.Cond
	in       []byte // ciphertext read from the socket, not yet taken by tc: in[off:]
	off      int
	cur      []byte // after the handshake: the engine's read, taken in place while decrypt runs
	inEnd    error  // the socket's end (io.EOF) or failure, after in
	blocking bool   // the handshake is running: Read waits for input
	aborted  bool   // the connection is closing: Read fails
	result   error  // the handshake's outcome, once done is set; guarded by mu
	done     bool

	// peerClosed is set once the peer's close_notify has been read.
	peerClosed atomic.Bool

	// Plaintext decrypted and not yet delivered, in a pooled buffer; more
	// says tc may hold more than the buffer took.
	plain *[]byte
	more  bool

	// Write serialises tc.Write with the queue's answer to it (see
	// Conn.write): wOver and wDrains are the last raw write's.
	wmu     sync.Mutex
	wOver   atomic.Bool
	wDrains atomic.Uint64

	// The plaintext accounting of the write queue, which holds records,
	// guarded by c.mu: segs are runs of records in queue order, each with
	// the plaintext it carries; plainQueued is the plaintext of the
	// records not yet wholly handed to the kernel, which Buffered and the
	// drain marks count; headSent is how much of segs[0] has been.
	segs        []tlsSegment
	headSent    int
	plainQueued int
}

// A tlsSegment is a run of queued records and the plaintext they carry:
// those of one Write (open while it is encrypting), or a record of TLS's
// own (a handshake message, an alert), which carries none.
type tlsSegment struct {
	cipher, plain int
	open          bool
}

// newTLSLayer puts TLS on c, as a server or as a client, with cfg.
func newTLSLayer(c *Conn, cfg *tls.Config, server bool) *tlsLayer {
	t := &tlsLayer{c: c, blocking: true}
	t.cond.L = &t.mu
	tr := &tlsTransport{t}
	if server {
		t.tc = tls.Server(tr, cfg)
	} else {
		t.tc = tls.Client(tr, cfg)
	}
	return t
}

// startHandshake runs the handshake on a goroutine of its own, which posts
// a wake-up to the event goroutine when it is done. Nothing on the event
// goroutine ever waits for it: it may sit in a tls.Config callback
// (GetCertificate, VerifyPeerCertificate, ...) for as long as that takes.
// A Server counts it among its goroutines, which Shutdown waits for.
func (t *tlsLayer) startHandshake() {
	t.ctx, t.cancel = context.WithCancel(context.Background())
	srv := t.c.srv
	if srv != nil {
		srv.handlers.Add(1) // the connection's own count is held: not at zero
	}
	go func() {
		if srv != nil {
			defer srv.handlers.Done()
		}
		err := t.tc.HandshakeContext(t.ctx) // ClientHelloInfo.Context: cancelled when the connection closes
		t.cancel()
		t.mu.Lock()
		t.done, t.result, t.blocking = true, err, false
		t.mu.Unlock()
		t.c.post(evWake)
	}()
}

// outcome reports whether the handshake has finished, and how.
func (t *tlsLayer) outcome() (done bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.done, t.result
}

// full reports whether the handshake has enough input waiting that the
// engine should stop reading for now.
func (t *tlsLayer) full() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.blocking && len(t.in)-t.off >= maxHandshakeInput
}

// input takes what the engine read: ciphertext, and the socket's end or
// failure.
//
// After the handshake, with nothing left over, p is taken in place, not
// copied: decrypt reads it, and keep copies what decrypt leaves, before
// the engine reads into p again.
func (t *tlsLayer) input(p []byte, end error) {
	t.mu.Lock()
	if !t.blocking && len(t.in) == t.off {
		t.cur = p
	} else {
		t.in = append(t.in, p...)
	}
	if end != nil && t.inEnd == nil {
		t.inEnd = end
	}
	t.mu.Unlock()
	t.cond.Broadcast()
}

// keep copies what decrypt left of the read taken in place.
func (t *tlsLayer) keep() {
	t.mu.Lock()
	if len(t.cur) > 0 {
		t.in = append(t.in, t.cur...)
	}
	t.cur = nil
	t.mu.Unlock()
}

// maxKeptInput is the largest input buffer a connection keeps for reuse.
const maxKeptInput = 16 << 10

// abort fails the handshake's reads, once the connection is closing, so
// that the handshake goroutine returns. It does not wait for that: the
// goroutine may be in a slow tls.Config callback, and the event goroutine
// (a whole loop, on the epoll engine) must not wait with it.
func (t *tlsLayer) abort() {
	t.mu.Lock()
	t.aborted = true
	t.mu.Unlock()
	t.cond.Broadcast()
	if t.cancel != nil {
		t.cancel() // a callback that heeds its ClientHelloInfo's context gives up
	}
}

// handshakeDone reports whether the handshake has finished successfully.
// Unlike tls.Conn.ConnectionState, it never waits for a handshake in
// progress, whose goroutine may be waiting for input that only the
// caller's goroutine delivers.
func (t *tlsLayer) handshakeDone() bool {
	done, err := t.outcome()
	return done && err == nil
}

// decrypt reads the plaintext that the ciphertext in hand holds, into
// t.plain, up to size bytes. It returns io.EOF after the peer's
// close_notify or the socket's end.
func (t *tlsLayer) decrypt(size int) ([]byte, error) {
	if t.plain == nil {
		t.plain = getReadBuf(size)
	}
	buf := *t.plain
	n := 0
	var err error
	for n < len(buf) {
		var m int
		m, err = t.tc.Read(buf[n:])
		n += m
		if err != nil {
			break
		}
	}
	t.more = n == len(buf)
	if err == errWouldBlock {
		err = nil
	}
	if n == 0 {
		t.release()
		return nil, err
	}
	return buf[:n], err
}

// release gives the plaintext buffer back once its data is delivered.
func (t *tlsLayer) release() {
	if t.plain != nil {
		putReadBuf(t.plain)
		t.plain = nil
	}
}

// write encrypts p and queues the records, reporting as the queue does
// (see Conn.write).
func (t *tlsLayer) write(p []byte) (n int, over bool, drains uint64, err error) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	c := t.c
	c.mu.Lock()
	t.openLocked(len(p))
	c.mu.Unlock()
	n, err = t.tc.Write(p)
	c.mu.Lock()
	t.closeLocked()
	c.maybeDrainLocked()
	c.mu.Unlock()
	return n, t.wOver.Load(), t.wDrains.Load(), err
}

// openLocked starts the segment of a Write of plain bytes. It joins the
// last segment if that one is closed and not the head, which may be half
// sent: the head's plaintext is credited as soon as its own records are
// sent, so the queue's count keeps falling while Writes keep coming, and
// the segments stay few.
func (t *tlsLayer) openLocked(plain int) {
	t.plainQueued += plain
	if n := len(t.segs); n >= 2 && !t.segs[n-1].open {
		t.segs[n-1].plain += plain
		t.segs[n-1].open = true
		return
	}
	t.segs = append(t.segs, tlsSegment{plain: plain, open: true})
}

// recordLocked counts a record about to be queued: in the open segment
// of the Write encrypting it, or in one of its own.
func (t *tlsLayer) recordLocked(cipher int) {
	if n := len(t.segs); n > 0 && t.segs[n-1].open {
		t.segs[n-1].cipher += cipher
		return
	}
	t.segs = append(t.segs, tlsSegment{cipher: cipher})
}

// closeLocked ends the open segment, once its Write has encrypted it all,
// and credits what has been sent already.
func (t *tlsLayer) closeLocked() {
	if n := len(t.segs); n > 0 {
		t.segs[n-1].open = false
	}
	t.sentLocked(0)
}

// sentLocked counts n more bytes of records handed to the kernel and
// credits the plaintext of each segment wholly sent.
func (t *tlsLayer) sentLocked(n int) {
	t.headSent += n
	for len(t.segs) > 0 && !t.segs[0].open && t.headSent >= t.segs[0].cipher {
		t.headSent -= t.segs[0].cipher
		t.plainQueued -= t.segs[0].plain
		t.segs = t.segs[1:]
	}
	if len(t.segs) == 0 {
		t.segs, t.headSent = nil, 0 // an idle connection keeps no slice
	}
}

// dropLocked forgets the queue, which closing has dropped.
func (t *tlsLayer) dropLocked() { t.segs, t.headSent, t.plainQueued = nil, 0, 0 }

// closeNotify sends close_notify, once the handshake is done; End and
// Shutdown send it before the FIN.
func (t *tlsLayer) closeNotify() {
	if t.handshakeDone() {
		t.tc.CloseWrite()
	}
}

// errWouldBlock tells crypto/tls that no more ciphertext has been read
// yet. It is a temporary net.Error, which tls.Conn does not keep: the next
// Read tries again.
var errWouldBlock error = &wouldBlockError{}

type wouldBlockError struct{}

func (*wouldBlockError) Error() string   { return "tcpkit: no more input yet" }
func (*wouldBlockError) Timeout() bool   { return true }
func (*wouldBlockError) Temporary() bool { return true }

// A tlsTransport is the net.Conn that crypto/tls reads ciphertext from and
// writes records to: the connection's input as the engine reads it, and
// its write queue.
type tlsTransport struct{ t *tlsLayer }

func (tr *tlsTransport) Read(b []byte) (int, error) {
	t := tr.t
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		switch {
		case t.aborted:
			return 0, net.ErrClosed
		case len(t.in) > t.off:
			wasFull := len(t.in)-t.off >= maxHandshakeInput
			n := copy(b, t.in[t.off:])
			t.off += n
			if t.off == len(t.in) {
				t.in, t.off = t.in[:0], 0
				if cap(t.in) > maxKeptInput {
					t.in = nil // let a large buffer go
				}
			}
			if wasFull && t.blocking && len(t.in)-t.off < maxHandshakeInput {
				t.c.post(evWake) // below the read-ahead limit again: read on
			}
			return n, nil
		case len(t.cur) > 0:
			n := copy(b, t.cur)
			t.cur = t.cur[n:]
			return n, nil
		case t.inEnd != nil:
			return 0, t.inEnd
		case !t.blocking:
			return 0, errWouldBlock
		}
		t.cond.Wait()
	}
}

func (tr *tlsTransport) Write(b []byte) (int, error) {
	t := tr.t
	_, over, drains, err := t.c.writeRaw(b)
	t.wOver.Store(over)
	t.wDrains.Store(drains)
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

func (tr *tlsTransport) Close() error                     { return nil } // the Conn closes the socket
func (tr *tlsTransport) LocalAddr() net.Addr              { return tr.t.c.LocalAddr() }
func (tr *tlsTransport) RemoteAddr() net.Addr             { return tr.t.c.RemoteAddr() }
func (tr *tlsTransport) SetDeadline(time.Time) error      { return nil } // the Conn's timers bound the handshake
func (tr *tlsTransport) SetReadDeadline(time.Time) error  { return nil }
func (tr *tlsTransport) SetWriteDeadline(time.Time) error { return nil }

// serverTLSConfig returns cfg with TLS 1.2 as the least version.
func serverTLSConfig(cfg *tls.Config) *tls.Config {
	if cfg.MinVersion >= tls.VersionTLS12 {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.MinVersion = tls.VersionTLS12
	return cfg
}

// clientTLSConfig returns cfg with TLS 1.2 as the least version and, if it
// names no server, host as the name to verify and send (SNI).
func clientTLSConfig(cfg *tls.Config, host string) (*tls.Config, error) {
	if cfg.MinVersion >= tls.VersionTLS12 && cfg.ServerName != "" {
		return cfg, nil
	}
	cfg = cfg.Clone()
	cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS12)
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify && cfg.VerifyConnection == nil {
		return nil, errors.New("tcpkit: TLS to a Unix socket needs Dialer.TLS.ServerName, the name the server's certificate must have")
	}
	return cfg, nil
}

// TLS returns the connection's negotiated TLS state (version, cipher
// suite, ALPN protocol, peer certificates), or nil if it is not a TLS
// connection, or if its handshake has not finished. A Handler sees the
// state of a finished handshake.
func (c *Conn) TLS() *tls.ConnectionState {
	if c.edge == nil || c.edge.tls == nil || !c.edge.tls.handshakeDone() {
		return nil // not TLS, or not yet: the state waits for a handshake in progress
	}
	st := c.edge.tls.tc.ConnectionState()
	return &st
}
