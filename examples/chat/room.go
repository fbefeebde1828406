package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/codec"
)

// Defaults of the chat server's settings.
const (
	// DefaultMaxLine is the longest line a client may send, line end
	// included.
	DefaultMaxLine = 4 << 10

	// DefaultMaxBuffered caps what the server holds for a client that
	// does not read: past it, the client is disconnected.
	DefaultMaxBuffered = 1 << 20

	// maxNick is the longest name /nick accepts.
	maxNick = 32
)

// A Room is a chat room. Every line a member sends reaches every other
// member as "NAME: TEXT\n": once, whole, in the order its sender sent its
// lines, and never back to the sender. All members see all lines in one
// and the same order, so a reply never arrives before what it answers. A
// member's name is its remote address (guestN for a Unix-socket client,
// which has none) until it sends "/nick NAME". Joins, leaves and renames
// are announced as lines that start with "* ".
//
// A member that sends a line over the room's limit gets an error line and
// is disconnected. A member that stops reading is disconnected once the
// server holds the Server's ConnConfig.MaxBuffered bytes for it. Either way
// the others carry on, undisturbed: a write to a member never blocks, it
// only queues.
//
// A Room serves connections through Handle, its tcpkit.Handler; Server
// returns a tcpkit.Server set up for it. Its methods are safe for
// concurrent use.
type Room struct {
	maxLine int
	log     *slog.Logger
	seq     atomic.Int64 // numbers members that have no address to be named by

	mu      sync.Mutex
	members map[*member]struct{}
}

// A member is one connected client. Its fields are used only from its
// connection's callbacks, which tcpkit runs one at a time, so they need no
// lock.
type member struct {
	c    *tcpkit.Conn
	name string
	out  []byte // the line being sent, reused from line to line
}

// NewRoom returns an empty room whose members may send lines of at most
// maxLine bytes, line end included. It logs joins and leaves to log.
func NewRoom(maxLine int, log *slog.Logger) *Room {
	if maxLine < 1 {
		panic("chat: NewRoom: maxLine must be at least 1")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Room{maxLine: maxLine, log: log, members: make(map[*member]struct{})}
}

// Server returns a tcpkit.Server for the room on addr, which disconnects a
// member once maxBuffered bytes are queued for it.
func (r *Room) Server(addr string, maxBuffered int) *tcpkit.Server {
	return &tcpkit.Server{
		Addr:    addr,
		Handler: r.Handle,
		Logger:  r.log,
		// The room does not use Pipe, but tcpkit still wants room in the
		// queue for HighWater plus one read: keep both well below the cap.
		ConnConfig: tcpkit.ConnConfig{
			MaxBuffered:    maxBuffered,
			HighWater:      max(1, min(tcpkit.DefaultHighWater, maxBuffered/4)),
			ReadBufferSize: max(1, min(tcpkit.DefaultReadBufferSize, maxBuffered/4)),
		},
	}
}

// Len returns the number of members.
func (r *Room) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.members)
}

// Handle is the room's tcpkit.Handler: it makes c a member.
func (r *Room) Handle(c *tcpkit.Conn) {
	m := &member{c: c, name: c.RemoteAddr().String()}
	if m.name == "" || m.name == "@" { // a Unix socket client has no address
		m.name = fmt.Sprintf("guest%d", r.seq.Add(1))
	}
	f := codec.NewFramer(codec.Lines(r.maxLine), r.maxLine, func(line []byte) { r.receive(m, line) })
	f.Reply = func(err error) []byte {
		if errors.Is(err, codec.ErrFrameTooLong) {
			return fmt.Appendf(nil, "* error: line too long (the limit is %d bytes, line end included); goodbye\n", r.maxLine)
		}
		return []byte("* error: " + err.Error() + "\n")
	}
	f.Attach(c)
	c.OnShutdown(func() {
		c.WriteString("* server shutting down; goodbye\n")
		c.End()
	})
	c.OnClose(func(err error) { r.leave(m, err) })
	r.join(m)
}

// join adds m to the room, welcomes it and announces it to the others.
func (r *Room) join(m *member) {
	r.log.Info("chat: joined", "name", m.name)
	r.mu.Lock()
	defer r.mu.Unlock()
	m.c.Write(fmt.Appendf(m.out[:0], "* welcome, you are %s; %s; /nick NAME to rename\n", m.name, company(len(r.members))))
	r.members[m] = struct{}{}
	r.broadcastLocked(m, fmt.Appendf(m.out[:0], "* %s joined\n", m.name))
}

// leave removes m from the room and announces it to the remaining members.
func (r *Room) leave(m *member, err error) {
	r.log.Info("chat: left", "name", m.name, "err", err, "in", m.c.BytesRead(), "out", m.c.BytesWritten())
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.members, m)
	r.broadcastLocked(m, fmt.Appendf(m.out[:0], "* %s left\n", m.name))
}

// receive handles a line from m: a command, or a message for the others.
func (r *Room) receive(m *member, line []byte) {
	if rest, ok := bytes.CutPrefix(line, []byte("/nick")); ok && (len(rest) == 0 || rest[0] == ' ') {
		r.rename(m, string(bytes.TrimSpace(rest)))
		return
	}
	m.out = append(append(append(append(m.out[:0], m.name...), ": "...), line...), '\n')
	r.broadcast(m, m.out)
}

// rename changes m's name, if name is valid, and announces it.
func (r *Room) rename(m *member, name string) {
	if !validNick(name) {
		m.c.Write(fmt.Appendf(m.out[:0], "* usage: /nick NAME, where NAME is 1 to %d letters, digits, '-', '_' or '.'\n", maxNick))
		return
	}
	old := m.name
	m.name = name
	r.log.Info("chat: renamed", "old", old, "name", name)
	m.c.Write(fmt.Appendf(m.out[:0], "* you are now %s\n", name))
	r.announce(m, "* %s is now %s\n", old, name)
}

// company says how many others are in the room.
func company(n int) string {
	switch n {
	case 0:
		return "nobody else is here"
	case 1:
		return "1 other is here"
	}
	return fmt.Sprintf("%d others are here", n)
}

// validNick reports whether name is acceptable as a name.
func validNick(name string) bool {
	if len(name) == 0 || len(name) > maxNick {
		return false
	}
	for _, b := range []byte(name) {
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '-', b == '_', b == '.':
		default:
			return false
		}
	}
	return true
}

// announce sends a formatted line to every member but from.
func (r *Room) announce(from *member, format string, args ...any) {
	from.out = fmt.Appendf(from.out[:0], format, args...)
	r.broadcast(from, from.out)
}

// broadcast writes line to every member but from.
func (r *Room) broadcast(from *member, line []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.broadcastLocked(from, line)
}

// broadcastLocked writes line to every member but from, with r.mu held.
//
// The writes happen under the lock. That is short: a Write never blocks,
// it makes at most one non-blocking system call, or copies into the
// member's queue. And it gives every member the same order of lines, so
// that a reply never reaches anyone before the line it answers, and a join
// is never announced after the newcomer's first words. A write that would
// take a member's queue past MaxBuffered closes that member, whose close
// event then removes it from the room; the others are not affected.
func (r *Room) broadcastLocked(from *member, line []byte) {
	for m := range r.members {
		if m != from {
			m.c.Write(line)
		}
	}
}
