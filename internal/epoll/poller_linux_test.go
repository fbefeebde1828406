package epoll

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns the two ends of a non-blocking Unix stream socket pair,
// closed when the test ends.
func pair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func newPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := New(16)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// wait collects one Wait's readiness by token.
func wait(t *testing.T, p *Poller, timeout time.Duration) (map[uint64]uint32, bool) {
	t.Helper()
	got := map[uint64]uint32{}
	_, woken, err := p.Wait(timeout, func(token uint64, ev uint32) { got[token] |= ev })
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return got, woken
}

func TestReadiness(t *testing.T) {
	p := newPoller(t)
	a, b := pair(t)
	const token = 1<<40 | 5 // both halves of the token survive
	if err := p.Add(a, token); err != nil {
		t.Fatal(err)
	}
	got, _ := wait(t, p, time.Second)
	if got[token]&Writable == 0 || got[token]&Readable != 0 {
		t.Fatalf("a new socket: readiness %#x, want writable only", got[token])
	}
	unix.Write(b, []byte("ping"))
	got, _ = wait(t, p, time.Second)
	if got[token]&Readable == 0 {
		t.Fatalf("after the peer wrote: readiness %#x, want readable", got[token])
	}
	buf := make([]byte, 16)
	if n, _ := unix.Read(a, buf); string(buf[:n]) != "ping" {
		t.Fatalf("read %q", buf[:n])
	}
	if _, err := unix.Read(a, buf); err != unix.EAGAIN {
		t.Fatalf("second read: %v, want EAGAIN", err)
	}
	// Edge-triggered: no new readiness, no report.
	if got, _ = wait(t, p, 20*time.Millisecond); len(got) != 0 {
		t.Fatalf("nothing new, yet Wait reported %v", got)
	}
	unix.Shutdown(b, unix.SHUT_WR)
	got, _ = wait(t, p, time.Second)
	if got[token]&PeerEnd == 0 {
		t.Fatalf("after the peer's half-close: readiness %#x, want PeerEnd", got[token])
	}
	if n, err := unix.Read(a, buf); n != 0 || err != nil {
		t.Fatalf("read after the peer's end: %d, %v; want EOF", n, err)
	}
}

func TestDelete(t *testing.T) {
	p := newPoller(t)
	a, b := pair(t)
	if err := p.Add(a, 3); err != nil {
		t.Fatal(err)
	}
	wait(t, p, time.Second) // the initial writable edge
	if err := p.Delete(a); err != nil {
		t.Fatal(err)
	}
	unix.Write(b, []byte("x"))
	if got, _ := wait(t, p, 20*time.Millisecond); len(got) != 0 {
		t.Fatalf("after Delete, Wait reported %v", got)
	}
	if err := p.Delete(a); err == nil {
		t.Error("a second Delete succeeded")
	}
}

func TestWake(t *testing.T) {
	p := newPoller(t)
	done := make(chan bool, 1)
	go func() {
		_, woken, err := p.Wait(10*time.Second, func(uint64, uint32) {})
		done <- woken && err == nil
	}()
	time.Sleep(20 * time.Millisecond) // most likely asleep in epoll_wait by now
	if err := p.Wake(); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("Wait returned without reporting the wake-up")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wake did not end a blocked Wait")
	}
	// Wake-ups before a Wait collapse into one, and one system call.
	before := p.writes.Load()
	for range 5 {
		p.Wake()
	}
	if n := p.writes.Load() - before; n != 1 {
		t.Errorf("five wake-ups wrote the eventfd %d times, want once", n)
	}
	if _, woken := wait(t, p, time.Second); !woken {
		t.Fatal("five wake-ups, and Wait was not woken")
	}
	if _, woken := wait(t, p, 20*time.Millisecond); woken {
		t.Fatal("the wake-ups were reported twice")
	}
	p.Wake() // and it wakes again after that
	if _, woken := wait(t, p, time.Second); !woken {
		t.Fatal("a wake-up after a reported one was lost")
	}
}

func TestTimeoutAndErrors(t *testing.T) {
	p := newPoller(t)
	start := time.Now()
	if got, woken := wait(t, p, 50*time.Millisecond); len(got) != 0 || woken {
		t.Fatalf("an idle Wait reported %v, %v", got, woken)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("Wait(50ms) returned after %v", d)
	}
	a, _ := pair(t)
	if err := p.Add(a, wakeToken); err == nil {
		t.Error("Add with the Poller's own token succeeded")
	}
	if err := p.Add(-1, 1); err == nil {
		t.Error("Add of a bad descriptor succeeded")
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// After Close, the Poller's descriptor numbers may belong to new sockets:
// Wake writes nothing to them (it wrote the eventfd's 8-byte counter to
// whatever had the eventfd's number, and a peer once received it over
// TCP), and Add and Delete report ErrClosed rather than act on them.
func TestPollerAfterClose(t *testing.T) {
	p, err := New(8)
	if err != nil {
		t.Fatal(err)
	}
	wakefd, epfd := p.wakefd, p.epfd
	p.Close()
	// The lowest free numbers go to the next descriptors: very likely the
	// Poller's own, now free. Make sure one of the pair has wakefd's.
	var a, b int
	for range 8 {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
		if fds[0] == wakefd || fds[1] == wakefd {
			a, b = fds[0], fds[1]
			if fds[1] == wakefd {
				a, b = b, a
			}
			break
		}
	}
	if a != wakefd {
		t.Fatalf("no new descriptor took the closed eventfd's number %d", wakefd)
	}
	if err := p.Wake(); err != nil {
		t.Errorf("Wake after Close: %v", err)
	}
	buf := make([]byte, 16)
	if n, err := unix.Read(b, buf); n > 0 || err != unix.EAGAIN {
		t.Errorf("Wake after Close wrote %d bytes to the socket that now has the eventfd's number", n)
	}
	if err := p.Add(a, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v, want ErrClosed", err)
	}
	if err := p.Delete(epfd); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Close: %v, want ErrClosed", err)
	}
}
