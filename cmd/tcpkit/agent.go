package main

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// An haproxyAgent answers HAProxy's agent checks (agent-check in a server
// line): for each connection to it, one line with the server's state, then
// the close. While serving it says "up ready"; once the server is asked to
// stop, "drain", and HAProxy sends it no new connections. Stopping then
// waits a drain delay of a few agent intervals before the listeners close,
// so that no new connection is on its way when they do.
type haproxyAgent struct {
	ln       net.Listener
	log      *slog.Logger
	draining atomic.Bool
	wg       sync.WaitGroup
}

// startAgent answers agent checks on ln.
func startAgent(ln net.Listener, log *slog.Logger) *haproxyAgent {
	a := &haproxyAgent{ln: ln, log: log}
	a.wg.Add(1)
	go a.serve()
	log.Info("answering HAProxy agent checks", "addr", ln.Addr().String())
	return a
}

func (a *haproxyAgent) serve() {
	defer a.wg.Done()
	for {
		c, err := a.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil { // EMFILE and the like: try again soon
			time.Sleep(10 * time.Millisecond)
			continue
		}
		state := "up ready\n"
		if a.draining.Load() {
			state = "drain\n"
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write([]byte(state))
		c.Close()
	}
}

// drain makes the agent say "drain" from now on.
func (a *haproxyAgent) drain() { a.draining.Store(true) }

// close stops answering.
func (a *haproxyAgent) close() {
	if a == nil {
		return
	}
	a.ln.Close()
	a.wg.Wait()
}
