//go:build linux

package tcpkit

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpkit/tcpkit/internal/epoll"
	"golang.org/x/sys/unix"
)

// EpollConfig holds the settings of an epoll engine. Its zero value is
// ready to use.
type EpollConfig struct {
	// Loops is the number of event loops, each a goroutine with an epoll
	// instance of its own. Default runtime.GOMAXPROCS(0).
	Loops int

	// ReadBufferSize is the size of each loop's read buffer, shared by its
	// connections: a connection holds no read buffer of its own. A
	// connection's reads are also capped by its ConnConfig.ReadBufferSize.
	// Default DefaultReadBufferSize (64 KiB).
	ReadBufferSize int

	// BlockingThreshold is how long a callback may hold its loop before it
	// is reported: once per connection, in the log, with the connection's
	// addresses, and in SlowCallbacks. Default 100ms; negative turns the
	// report off.
	BlockingThreshold time.Duration

	// Logger receives the engine's reports. Default slog.Default().
	Logger *slog.Logger
}

// An EpollEngine runs connections on a few event loops over epoll (Linux
// only); see Engine for when to choose it. One engine may serve several
// Servers and Dialers. Close it once they are done: a Serve still running
// on it then returns an error.
//
// From a *net.TCPListener or *net.UnixListener, a Server on this engine
// accepts with accept4(2) on the listening socket, woken by a loop, and
// hands the new socket straight to a loop. Any other listener with a file
// descriptor (one that wraps those, say) is served through its own
// Accept, and the engine takes over each socket it returns.
type EpollEngine struct {
	cfg   EpollConfig
	loops []*epollLoop
	next  atomic.Uint32
	slow  atomic.Int64
	wg    sync.WaitGroup
	once  sync.Once

	pollersOnce sync.Once

	closed chan struct{} // closed by Close: listeners stop accepting
	lnMu   sync.Mutex
	lns    map[uint64]*epollListener // by token
	lnSeq  uint64
}

// errEngineClosed is the close error of connections still open when their
// engine is closed; they are reset, so that their peers know.
var errEngineClosed = errors.New("tcpkit: engine closed")

// NewEpollEngine starts an epoll engine's loops.
func NewEpollEngine(cfg EpollConfig) (*EpollEngine, error) {
	if cfg.Loops <= 0 {
		cfg.Loops = runtime.GOMAXPROCS(0)
	}
	if cfg.ReadBufferSize <= 0 {
		cfg.ReadBufferSize = DefaultReadBufferSize
	}
	if cfg.BlockingThreshold == 0 {
		cfg.BlockingThreshold = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	e := &EpollEngine{cfg: cfg, closed: make(chan struct{})}
	for range cfg.Loops {
		p, err := epoll.New(256)
		if err != nil {
			e.Close()
			return nil, err
		}
		l := &epollLoop{e: e, p: p, buf: make([]byte, cfg.ReadBufferSize), conns: make(map[uint64]*epollDriver),
			exited: make(chan struct{})}
		e.loops = append(e.loops, l)
		e.wg.Add(1)
		go l.run()
	}
	return e, nil
}

func (e *EpollEngine) String() string { return "epoll" }

// SlowCallbacks returns how many times a callback held its loop for longer
// than BlockingThreshold.
func (e *EpollEngine) SlowCallbacks() int64 { return e.slow.Load() }

// Close stops the loops, resetting any connection still open on them
// (its close error says the engine closed), and waits for them to finish.
// Called from one of the engine's own callbacks, it cannot wait for the
// loop it runs on: it stops the loops and returns, and they finish once
// the callback has returned.
func (e *EpollEngine) Close() error {
	if e.closed == nil {
		return nil // a zero EpollEngine: nothing was started
	}
	e.once.Do(func() { // quick: nothing in it waits
		close(e.closed)
		for _, l := range e.loops {
			l.mu.Lock()
			l.closing = true
			l.mu.Unlock()
			l.p.Wake()
		}
	})
	if e.onLoop() {
		go e.finish() // the loop this runs on stops once the callback returns
		return nil
	}
	e.finish()
	return nil
}

// finish waits for the loops to stop, then releases their pollers.
func (e *EpollEngine) finish() {
	e.wg.Wait()
	e.pollersOnce.Do(func() {
		for _, l := range e.loops {
			l.p.Close()
		}
	})
}

// onLoop reports whether the calling goroutine is one of e's loops: a
// callback of one of its connections.
func (e *EpollEngine) onLoop() bool {
	id := goroutineID()
	for _, l := range e.loops {
		if l.gid.Load() == id {
			return true
		}
	}
	return false
}

// goroutineID returns the calling goroutine's number, from its stack
// trace's first line ("goroutine 42 [running]:"). It costs about a
// microsecond: for the rare calls that must know (EpollEngine.Close, a
// TLS Dial), never on the data path.
func goroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = b[len("goroutine "):]
	var id uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}

// usable reports why e cannot take connections, if it cannot: it was
// closed, or it is a zero EpollEngine rather than one from NewEpollEngine.
func (e *EpollEngine) usable() error {
	if len(e.loops) == 0 {
		return errors.New("tcpkit: an EpollEngine must be made by NewEpollEngine")
	}
	select {
	case <-e.closed:
		return errEngineClosed
	default:
		return nil
	}
}

func (e *EpollEngine) listener(ln net.Listener) (net.Listener, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	switch l := ln.(type) {
	case *net.TCPListener:
		return e.listen(ln, l)
	case *net.UnixListener:
		return e.listen(ln, l)
	case syscall.Conn:
		return ln, nil // its own Accept, which may do more than accept; newConn takes the socket over
	}
	return nil, fmt.Errorf("tcpkit: the epoll engine needs a listener with a file descriptor (a *net.TCPListener or *net.UnixListener); %T has none", ln)
}

// newConn takes nc over. On a closed engine it refuses, and a connection
// that comes to a loop after its last turn all the same (the engine closed
// meanwhile) is reset and closed by a goroutine of its own (see orphan).
func (e *EpollEngine) newConn(nc net.Conn, cfg *ConnConfig, srv *Server, log *slog.Logger) (*Conn, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if a, ok := nc.(*acceptedSocket); ok {
		return e.adopt(a, cfg, srv, log), nil
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("tcpkit: the epoll engine needs a connection with a file descriptor; %T has none", nc)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("fcntl", derr)
	}
	_, tcp := nc.(*net.TCPConn)
	d := &epollDriver{fd: fd, tcp: tcp}
	d.keepAddrs(nc.LocalAddr(), nc.RemoteAddr())
	nc.Close() // the duplicate keeps the socket, still non-blocking
	return e.attach(d, cfg, srv, log), nil
}

// attach puts d on the next of e's loops and makes its Conn.
func (e *EpollEngine) attach(d *epollDriver, cfg *ConnConfig, srv *Server, log *slog.Logger) *Conn {
	d.l = e.loops[int(e.next.Add(1))%len(e.loops)]
	d.c = newConn(d, cfg, srv, log)
	return d.c
}

// adopt makes a Conn on a loop of e for a socket fresh from an
// epollListener, with the kernel's defaults: Go's net would have set
// TCP_NODELAY on it, and so does adopt, unless cfg asks for Nagle.
func (e *EpollEngine) adopt(a *acceptedSocket, cfg *ConnConfig, srv *Server, log *slog.Logger) *Conn {
	d := &epollDriver{fd: a.fd, tcp: a.tcp}
	d.keepAliveOff.Store(true)
	if a.tcp {
		d.localAP, d.remoteAP = a.localAP, a.remoteAP
		if !cfg.Nagle {
			d.setNoDelay(true)
		}
	} else {
		d.addr.Store(&connAddrs{a.local, a.remote})
	}
	*a = acceptedSocket{}
	acceptedSockets.Put(a)
	return e.attach(d, cfg, srv, log)
}

func (e *EpollEngine) start(c *Conn, h Handler) {
	d := c.drv.(*epollDriver)
	d.h = h
	d.started.Store(true)
	d.wake()
}

// loopStats describes the engine's loops, for Server.Stats.
func (e *EpollEngine) loopStats() []LoopStats {
	now := int64(monotime() / time.Second)
	out := make([]LoopStats, len(e.loops))
	for i, l := range e.loops {
		var lag int64
		switch l.lagSec.Load() {
		case now:
			lag = max(l.lagCur.Load(), l.lagPrev.Load())
		case now - 1:
			lag = l.lagCur.Load()
		}
		out[i] = LoopStats{Conns: int(l.nconns.Load()), Lag: time.Duration(lag), SlowCallbacks: l.slow.Load()}
	}
	return out
}
