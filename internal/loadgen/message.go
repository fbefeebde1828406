package loadgen

import (
	"bytes"
	"encoding/binary"
)

// The wire format of a message of Size bytes:
//
//	offset  size  field
//	0       8     sequence number on its connection, from 0 (little endian)
//	8       4     connection id, unique within the run
//	12      4     check: a hash of the two fields above
//	16      rest  payload: a pseudo-random pattern fixed per worker
//
// The echo must come back byte for byte. The check tells a damaged header
// from a message in the wrong place; the connection id tells a message from
// another connection; the sequence number tells reordering and loss; the
// pattern, compared whole, catches any damaged payload byte. Because the
// payload is the same for every message of a worker, sending costs 16 bytes
// of writes per message and checking one memory comparison.
const headerLen = 16

// putHeader writes the header of message seq of connection id into b.
func putHeader(b []byte, id uint32, seq uint64) {
	binary.LittleEndian.PutUint64(b[0:8], seq)
	binary.LittleEndian.PutUint32(b[8:12], id)
	binary.LittleEndian.PutUint32(b[12:16], headerCheck(id, seq))
}

// headerCheck mixes a connection id and a sequence number into 32 bits
// (the splitmix64 finaliser).
func headerCheck(id uint32, seq uint64) uint32 {
	x := seq ^ uint64(id)<<32 ^ 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return uint32(x ^ x>>31)
}

// fillPattern fills b with a pseudo-random pattern seeded by seed
// (xorshift64*), so that payloads differ between workers and a shifted or
// spliced stream does not compare equal by accident.
func fillPattern(b []byte, seed uint64) {
	x := seed*0x2545f4914f6cdd1d | 1
	for i := range b {
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		b[i] = byte((x * 0x2545f4914f6cdd1d) >> 56)
	}
}

// verdict is the outcome of checking one echoed message.
type verdict uint8

const (
	msgOK       verdict = iota
	msgCorrupt          // header or payload damaged, or from another connection
	msgOutOfSeq         // intact, but not the sequence number expected
)

// checkMessage checks msg, one echoed message, against connection id and
// payload pattern (the whole Size bytes; its first headerLen bytes are
// ignored), and returns its verdict and sequence number.
func checkMessage(msg []byte, id uint32, pattern []byte, want uint64) (verdict, uint64) {
	seq := binary.LittleEndian.Uint64(msg[0:8])
	gotID := binary.LittleEndian.Uint32(msg[8:12])
	sum := binary.LittleEndian.Uint32(msg[12:16])
	switch {
	case gotID != id || sum != headerCheck(gotID, seq):
		return msgCorrupt, seq
	case !bytes.Equal(msg[headerLen:], pattern[headerLen:]):
		return msgCorrupt, seq
	case seq != want:
		return msgOutOfSeq, seq
	}
	return msgOK, seq
}
