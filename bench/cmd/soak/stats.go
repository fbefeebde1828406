package main

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// The client classes, in the order of the tables.
const (
	classSilent    = "silent TLS"
	classPartial   = "partial PROXY header"
	classFlood     = "flooder"
	classReset     = "resetter"
	classUrgent    = "urgent data (MSG_OOB)"
	classSlow      = "slow reader"
	classHalfClose = "half-close"
	classChurn     = "connect and leave"
)

var classOrder = []string{classSilent, classPartial, classFlood, classReset, classUrgent, classSlow, classHalfClose, classChurn}

// classStats is what the clients of one class saw on one server. Byte
// counts are of plaintext.
type classStats struct {
	mu sync.Mutex

	Conns    int64 `json:"conns"`    // connections attempted
	Failed   int64 `json:"failed"`   // connects or handshakes that failed
	Sessions int64 `json:"sessions"` // verified connections that ended
	Clean    int64 `json:"clean"`    // ended with every byte echoed and a clean end, nothing stalled

	Sent     int64 `json:"sent"`     // bytes the client's TLS layer took
	Verified int64 `json:"verified"` // bytes echoed back that matched
	Corrupt  int64 `json:"corrupt"`  // bytes echoed back that did not match, or beyond what was sent
	// CutByError counts bytes sent and not echoed on connections that
	// ended with an error the client saw (a reset, a TLS alert, a cut
	// record): lost loudly.
	CutByError int64 `json:"cut_by_error"`
	// LostSilently counts bytes sent and not echoed on connections that
	// ended with a clean end (EOF, close_notify) or on which nothing
	// moved for the stall bound: neither echoed nor followed by an error.
	LostSilently int64 `json:"lost_silently"`
	Stalls       int64 `json:"stalls"` // connections given up after nothing moved for the stall bound
	// Late counts urgent-data rounds whose echo did not come within the
	// stall bound but came after the client's FIN.
	Late int64 `json:"late"`

	Reset     int64 `json:"reset"`      // resetters: connections the client reset
	LeftEarly int64 `json:"left_early"` // connect and leave: closed before the echo, by design

	// Silent and partial-header clients: how the server closed them.
	Closed   int64         `json:"closed"`    // the server closed the connection
	TooLate  int64         `json:"too_late"`  // still open at the bound
	CloseMin time.Duration `json:"close_min"` // the quickest close
	CloseMax time.Duration `json:"close_max"` // the slowest close

	Errors map[string]int64 `json:"errors,omitempty"` // errors seen, by kind
	Notes  []string         `json:"notes,omitempty"`  // the first findings, with detail
}

// maxNotes bounds the findings kept per class.
const maxNotes = 8

func (c *classStats) lock() func() {
	c.mu.Lock()
	return c.mu.Unlock
}

func (c *classStats) addErr(kind string) {
	if c.Errors == nil {
		c.Errors = map[string]int64{}
	}
	if len(c.Errors) < 50 || c.Errors[kind] > 0 {
		c.Errors[kind]++
	} else {
		c.Errors["other kinds"]++
	}
}

// note records a finding, the first maxNotes of them.
func (c *classStats) note(start time.Time, format string, args ...any) {
	if len(c.Notes) < maxNotes {
		c.Notes = append(c.Notes, fmt.Sprintf("t+%.1fs: ", time.Since(start).Seconds())+fmt.Sprintf(format, args...))
	}
}

// conn counts a connection attempt.
func (c *classStats) conn() {
	defer c.lock()()
	c.Conns++
}

// connFailed counts a connect or handshake that failed.
func (c *classStats) connFailed(err error) {
	defer c.lock()()
	c.Failed++
	c.addErr("connect: " + errKind(err))
}

// endSession accounts for a verified connection: sent bytes went out,
// echoed came back, corrupt of which did not match, and err is how it
// ended (nil: a clean end; a timeout: a stall). stalledBefore says a
// stall was seen and survived earlier in the session.
func (c *classStats) endSession(start time.Time, sent, echoed, corrupt int64, err error, stalledBefore bool, detail string) {
	defer c.lock()()
	c.Sessions++
	c.Sent += sent
	extra := max(echoed-sent, 0) // bytes beyond what was sent: corrupt
	echoed -= extra
	corrupt = min(corrupt, echoed)
	c.Corrupt += corrupt + extra
	c.Verified += echoed - corrupt
	missing := sent - echoed
	switch {
	case err == nil && missing == 0:
		if corrupt+extra == 0 && !stalledBefore {
			c.Clean++
		}
	case err == nil:
		c.LostSilently += missing
		c.addErr("clean end before all was echoed")
		c.note(start, "clean end after %d of %d bytes echoed (%s)", echoed, sent, detail)
	case isTimeout(err):
		if !stalledBefore {
			c.Stalls++
		}
		c.LostSilently += missing
		c.addErr("stall")
		c.note(start, "stalled: %d of %d bytes echoed, then nothing (%s)", echoed, sent, detail)
	default:
		c.CutByError += missing
		c.addErr(errKind(err))
	}
	if corrupt+extra > 0 {
		c.note(start, "%d corrupt bytes among %d echoed, %d beyond what was sent (%s)", corrupt, echoed, extra, detail)
	}
}

// serverClosed accounts for a silent or partial-header client that the
// server closed after wait, err being what the client's read returned.
func (c *classStats) serverClosed(wait time.Duration, err error) {
	defer c.lock()()
	c.Closed++
	if c.CloseMin == 0 || wait < c.CloseMin {
		c.CloseMin = wait
	}
	c.CloseMax = max(c.CloseMax, wait)
	if !errors.Is(err, io.EOF) {
		c.addErr("closed by the server with " + errKind(err))
	}
}

// tooLate accounts for a silent or partial-header client still open at
// the bound.
func (c *classStats) tooLate(start time.Time, bound time.Duration, detail string) {
	defer c.lock()()
	c.TooLate++
	c.note(start, "not closed by the server within %v (%s)", bound, detail)
}

// stall accounts for a stall that the session goes on from.
func (c *classStats) stall(start time.Time, format string, args ...any) {
	defer c.lock()()
	c.Stalls++
	c.note(start, format, args...)
}

// late accounts for a stalled echo of n bytes that came after the
// client's FIN.
func (c *classStats) late(start time.Time, n int64) {
	defer c.lock()()
	c.Late++
	c.note(start, "the stalled echo (%d bytes) came after the FIN", n)
}

// soakStats is what the clients saw on one server, by class.
type soakStats struct {
	classes map[string]*classStats
}

func newSoakStats() *soakStats {
	s := &soakStats{classes: map[string]*classStats{}}
	for _, n := range classOrder {
		s.classes[n] = &classStats{}
	}
	return s
}

func (s *soakStats) class(name string) *classStats { return s.classes[name] }
