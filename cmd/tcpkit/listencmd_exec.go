package main

import (
	"errors"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"

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
		c.OnShutdown(func() { p.signal(terminate) })
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
	inR.Close()
	outW.Close()
	if err != nil {
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
	go p.feedProcess(inW, fed)
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
	c.End() // after the output: End sends FIN once the queue is flushed
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
// resuming the connection after each chunk, and closes it at the client's
// end. Once the process stops reading (its input is closed, or it has
// exited), the rest of the client's data is discarded, so that the client
// can finish sending and the connection can close cleanly.
func (p *execConn) feedProcess(in *os.File, fed chan<- struct{}) {
	defer close(fed)
	var discarded int64
	for b := range p.feed {
		if in != nil {
			if _, err := in.Write(b); err != nil {
				in.Close()
				in = nil
				p.s.log.Info("the process stopped reading; discarding what the client sends", "remote", peer(p.c.RemoteAddr()))
			}
		}
		if in == nil {
			discarded += int64(len(b))
		}
		p.c.Resume()
	}
	if in != nil {
		in.Close()
	}
	if discarded > 0 {
		p.s.log.Info("discarded client data after the process stopped reading", "remote", peer(p.c.RemoteAddr()), "bytes", discarded)
	}
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
