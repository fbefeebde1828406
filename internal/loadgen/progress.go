package loadgen

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"
)

// progressInterval is how often the live status line is redrawn.
const progressInterval = 250 * time.Millisecond

// A progressLine redraws a one-line status on a terminal until stopped.
type progressLine struct {
	once sync.Once
	quit chan struct{}
	done chan struct{}
}

// startProgress starts redrawing a status line on w, if w is a terminal;
// otherwise it does nothing. status returns the line's label, the messages
// done so far and the errors so far; the line adds the rate since the last
// redraw.
func startProgress(w io.Writer, status func() (label string, msgs, errs int64)) *progressLine {
	p := &progressLine{quit: make(chan struct{}), done: make(chan struct{})}
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		last, lastAt := int64(0), time.Now()
		for {
			select {
			case <-p.quit:
				fmt.Fprint(f, "\r\x1b[K") // clear the line for what follows
				return
			case now := <-t.C:
				label, msgs, errs := status()
				rate := float64(msgs-last) / now.Sub(lastAt).Seconds()
				last, lastAt = msgs, now
				fmt.Fprintf(f, "\r%s  %s msgs  %s/s  errors %d\x1b[K", label, count(msgs), count(int64(rate)), errs)
			}
		}
	}()
	return p
}

// stop ends the redrawing and clears the line. It may be called more than
// once.
func (p *progressLine) stop() {
	p.once.Do(func() { close(p.quit) })
	<-p.done
}

// count formats n with thousands separators: 1234567 is "1,234,567".
func count(n int64) string {
	if n < 0 {
		return "-" + count(-n)
	}
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
