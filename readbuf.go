package tcpkit

import (
	"math/bits"
	"sync"
)

// Read buffers come from pools, one per power-of-two size from 1 KiB to
// 4 MiB, so that a connection holds a read buffer only while a read is in
// hand: an idle connection holds none.
const (
	minBufClass = 10 // 1 KiB
	maxBufClass = 22 // 4 MiB
)

var readBufPools [maxBufClass + 1]sync.Pool

// bufClass returns the pool class of a buffer of n bytes, or -1 if n is
// outside the pooled sizes.
func bufClass(n int) int {
	if n <= 0 || n > 1<<maxBufClass {
		return -1
	}
	return max(bits.Len(uint(n-1)), minBufClass)
}

// getReadBuf returns a buffer of n bytes, from its pool if it has one.
func getReadBuf(n int) *[]byte {
	c := bufClass(n)
	if c < 0 {
		b := make([]byte, n)
		return &b
	}
	if p, ok := readBufPools[c].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<c)
	return &b
}

// putReadBuf gives a buffer from getReadBuf back to its pool. The caller
// must not use it again.
func putReadBuf(p *[]byte) {
	c := bufClass(cap(*p))
	if c < 0 || cap(*p) != 1<<c {
		return // not a pooled size
	}
	readBufPools[c].Put(p)
}
