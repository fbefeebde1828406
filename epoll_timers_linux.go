//go:build linux

package tcpkit

import (
	"container/heap"
	"time"
)

// A timerHeap is a loop's timers: the connections with a deadline set,
// earliest first. Each connection is in it at most once, at the index its
// timerPos records, so that a timer changed or turned off is fixed or
// removed in place: a closed connection leaves nothing behind, and however
// often a connection re-arms its timer, the heap holds one entry for it.
// Loop goroutine only.
type timerHeap []*epollDriver

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].timerAt < h[j].timerAt }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].timerPos, h[j].timerPos = i+1, j+1
}

func (h *timerHeap) Push(x any) {
	d := x.(*epollDriver)
	*h = append(*h, d)
	d.timerPos = len(*h)
}

func (h *timerHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil // the heap keeps no closed connection reachable
	*h = old[:len(old)-1]
	d.timerPos = 0
	return d
}

// set arms d's timer for at, as monotime counts time; zero turns it off.
func (h *timerHeap) set(d *epollDriver, at time.Duration) {
	if at == d.timerAt {
		return
	}
	d.timerAt = at
	switch {
	case at == 0 && d.timerPos != 0:
		heap.Remove(h, d.timerPos-1)
	case at == 0:
	case d.timerPos != 0:
		heap.Fix(h, d.timerPos-1)
	default:
		heap.Push(h, d)
	}
}

// next returns the time of the earliest timer, as monotime counts time.
func (h timerHeap) next() (time.Duration, bool) {
	if len(h) == 0 {
		return 0, false
	}
	return h[0].timerAt, true
}

// popDue removes and returns the connection of the earliest timer if it is
// due at now; its timer is off from then on.
func (h *timerHeap) popDue(now time.Duration) (*epollDriver, bool) {
	if len(*h) == 0 || (*h)[0].timerAt > now {
		return nil, false
	}
	d := heap.Pop(h).(*epollDriver)
	d.timerAt = 0
	return d, true
}
