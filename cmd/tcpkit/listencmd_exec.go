package main

import (
	"errors"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpkit/tcpkit"
)

// execHandler returns the connection listener of tcpkit listen --exec: a
// process per connection, its standard input and output wired to it.
//
// The connection's data goes to the process through a pipe, one chunk at
// a time: the connection is paused while a chunk is being written, so a
// process that does not read stops the connection being read. The
// process's output is read only while the connection's write queue is
// under HighWater. Either way memory stays bounded.
//
// Input is never dropped silently: if the process exits leaving bytes from
// the client unread, or the client sends more after, the client is reset
// rather than ended (see feedProcess).
func (s *listenSession) execHandler() tcpkit.Handler {
	return func(c *tcpkit.Conn) {
		p := &execConn{s: s, c: c, feed: make(chan []byte, 1), drained: make(chan struct{}, 1), started: make(chan struct{})}
		c.Pause() // until the process has started
		c.OnData(func(b []byte) {
			c.Pause()
			p.feed <- append([]byte(nil), b...) // room for one: the connection is paused until it is taken
		})
		c.OnEnd(p.closeFeed)
		c.OnDrain(func() {
			select {
			case p.drained <- struct{}{}:
			default:
			}
		})
		c.OnShutdown(func() {
			p.shutdown.Store(true)
			p.signal(terminate)
		})
		c.OnClose(func(err error) {
			p.closeFeed()
			if err != nil {
				p.signal(kill) // the connection is gone: so is the point of the process
			}
		})
		s.wg.Add(1)
		go p.run()
	}
}

// execConn is one connection of tcpkit listen --exec and its process.
type execConn struct {
	s        *listenSession
	c        *tcpkit.Conn
	feed     chan []byte   // data from the client, for the process; closed at its end
	feedOnce sync.Once     // closes feed
	drained  chan struct{} // a drain event happened
	started  chan struct{} // closed once the process has started, or failed to
	cmd      *exec.Cmd     // set before started is closed
	exited   atomic.Bool   // the process has been reaped
	stopped  atomic.Bool   // it was signalled by us: its death is no failure
	shutdown atomic.Bool   // the server is shutting down: lost input is a cut
	lost     atomic.Bool   // the client has been reset for lost input
	mu       sync.Mutex    // orders signals against the reaping
}

func (p *execConn) closeFeed() { p.feedOnce.Do(func() { close(p.feed) }) }

// signal sends sig to the process group, if the process has started and
// not yet been reaped.
func (p *execConn) signal(sig func(*exec.Cmd)) {
	go func() { // the process may be starting: do not hold up the event goroutine
		<-p.started
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.cmd != nil && !p.exited.Load() {
			p.stopped.Store(true)
			sig(p.cmd)
		}
	}()
}

// run starts the process, relays its output to the connection, ends the
// connection once the output ends, and reaps the process.
func (p *execConn) run() {
	defer p.s.wg.Done()
	s, c := p.s, p.c
	remote := peer(c.RemoteAddr())
	inR, inW, err := os.Pipe()
	if err != nil {
		close(p.started)
		p.startFailed(err)
		return
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		close(p.started)
		p.startFailed(err)
		return
	}
	cmd := exec.Command("/bin/sh", "-c", s.o.exec)
	cmd.Env = append(os.Environ(),
		"TCPKIT_REMOTE_ADDR="+remote,
		"TCPKIT_LOCAL_ADDR="+peer(c.LocalAddr()))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, s.a.stderr
	ownProcessGroup(cmd)
	err = cmd.Start()
	// inR stays open here until the process has exited, so that what it
	// left unread can be counted; writes to a process that has closed its
	// input then wait, as for one that does not read.
	outW.Close()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		close(p.started)
		p.startFailed(err)
		return
	}
	p.cmd = cmd
	close(p.started)
	s.log.Info("process started", "remote", remote, "pid", cmd.Process.Pid)

	fed := make(chan struct{})
	reaped := make(chan struct{})
	go p.feedProcess(inW, inR, reaped, fed)
	c.Resume()
	p.relayOutput(outR)
	outR.Close()

	err = cmd.Wait()
	p.mu.Lock()
	p.exited.Store(true)
	p.mu.Unlock()
	status := cmd.ProcessState.ExitCode()
	s.log.Info("process exited", "remote", remote, "pid", cmd.Process.Pid, "status", cmd.ProcessState.String())
	var ee *exec.ExitError
	if p.stopped.Load() {
		// Stopped by the shutdown, or because the client has gone.
	} else if err != nil && errors.As(err, &ee) && status != 0 {
		s.fail(failf("--exec %q: %s", s.o.exec, cmd.ProcessState.String()))
	} else if err != nil && !errors.As(err, &ee) {
		s.fail(failf("--exec %q: %v", s.o.exec, err))
	}
	// The process has gone: a write to its input that waits for room
	// never gets it. The feeder ends or resets the connection.
	if errors.Is(inW.SetWriteDeadline(time.Now()), os.ErrNoDeadline) {
		inR.Close() // a write fails, rather than waits, once the pipe has no reader
	}
	close(reaped)
	<-fed
}

// startFailed ends a connection whose process could not start.
func (p *execConn) startFailed(err error) {
	p.s.log.Error("cannot start the process", "remote", peer(p.c.RemoteAddr()), "exec", p.s.o.exec, "err", err.Error())
	p.s.fail(failf("--exec %q: %v", p.s.o.exec, err))
	p.c.Close()
	for range p.feed { // until the connection's end or close
		p.c.Resume()
	}
}

// feedProcess writes the client's data to the process's standard input,
// in, resuming the connection after each chunk, and closes in at the
// client's end. It holds inR, the read end of that pipe, until reaped is
// closed: the process has exited and its output is queued on the
// connection. It then ends the connection (FIN once the output is sent)
// if the process took every byte that came, and otherwise resets it: the
// bytes the process left in the pipe, the rest of a write that could not
// finish, and what the client sends after, can reach no one.
func (p *execConn) feedProcess(in, inR *os.File, reaped <-chan struct{}, fed chan<- struct{}) {
	defer close(fed)
	defer inR.Close()
	feed := p.feed
	var lost int64 // bytes from the client that the process did not take
	gone := false  // reaped has been closed
	for feed != nil || reaped != nil {
		select {
		case b, ok := <-feed:
			switch {
			case !ok:
				feed = nil
				if in != nil {
					in.Close() // the process sees the end of its input
					in = nil
				}
			case gone:
				p.inputLost(int64(len(b)))
			case in == nil:
				lost += int64(len(b)) // a write failed: reaped is near
			default:
				n, err := in.Write(b)
				if err != nil {
					// The deadline set once the process had exited, or
					// a broken pipe. The connection stays paused.
					lost += int64(len(b) - n)
					in.Close()
					in = nil
					continue
				}
				p.c.Resume()
			}
		case <-reaped:
			reaped, gone = nil, true
			lost += pipeUnread(inR)
			if in != nil {
				in.Close()
				in = nil
			}
			select {
			case b, ok := <-feed: // a chunk taken from the client already
				if ok {
					lost += int64(len(b))
				} else {
					feed = nil
				}
			default:
			}
			if lost > 0 {
				p.inputLost(lost)
			} else {
				p.c.End() // sends FIN once the output queued is sent
			}
		}
	}
}

// inputLost resets the client, once, for n bytes it sent that the process,
// which has exited, did not take.
func (p *execConn) inputLost(n int64) {
	if p.lost.Swap(true) {
		return
	}
	what := "the --exec process exited"
	if p.shutdown.Load() {
		what = "the --exec process was stopped"
	}
	p.s.reset(p.c, &inputLost{what: what, n: n, shutdown: p.shutdown.Load()})
}

// relayOutput sends the process's output to the connection until it ends,
// reading only while the connection's queue is under HighWater.
func (p *execConn) relayOutput(out *os.File) {
	buf := make([]byte, stdinChunk)
	for {
		n, err := out.Read(buf)
		if n > 0 {
			if _, err := p.c.Write(buf[:n]); err != nil {
				return // the connection is closing; closing out sends the process SIGPIPE
			}
			for p.c.Buffered() > tcpkit.DefaultHighWater {
				select {
				case <-p.drained:
				case <-p.c.Done():
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
