package codec

import (
	"bufio"
	"encoding/binary"
	"fmt"
)

// A LengthPrefix describes the header of a length-prefixed frame: an
// unsigned integer of Size bytes, in byte order Order, from which the
// length of the payload that follows is worked out. Its zero value is not
// valid: set Size at least.
//
// Examples:
//
//	LengthPrefix{Size: 4}                                  // uint32, big-endian, counts the payload
//	LengthPrefix{Size: 2, Order: binary.LittleEndian}      // uint16, little-endian
//	LengthPrefix{Size: 4, Adjust: -4}                      // uint32 that counts itself too
type LengthPrefix struct {
	// Size is the header's length in bytes: 1, 2, 4 or 8.
	Size int

	// Order is the header's byte order. Nil means binary.BigEndian,
	// network byte order.
	Order binary.ByteOrder

	// Adjust is added to the header's value to give the payload's
	// length. Zero, the default, is for a header that counts the payload
	// only; -Size is for a header that counts itself as well, that is the
	// whole frame. A value that comes out negative is malformed. Adjust
	// lies between -(1<<32) and the largest payload, max - Size.
	Adjust int
}

// lengthCodec is a LengthPrefix checked against a max, with the limits on
// header values worked out once.
type lengthCodec struct {
	size   int
	order  binary.ByteOrder
	adjust int
	max    int
	minV   uint64 // the smallest header value, that of an empty payload: -Adjust or 0
	plus   int    // Adjust if positive, else 0: payload length = value - minV + plus
	maxV   uint64 // the largest header value within max
}

// check validates lp for frames of at most max bytes; fn names the caller
// in the panic message.
func (lp LengthPrefix) check(fn string, limit int) lengthCodec {
	switch lp.Size {
	case 1, 2, 4, 8:
	default:
		panic(fmt.Sprintf("codec: %s: LengthPrefix.Size is %d; want 1, 2, 4 or 8", fn, lp.Size))
	}
	if limit < lp.Size {
		panic(fmt.Sprintf("codec: %s: max (%d) is smaller than the %d-byte header", fn, limit, lp.Size))
	}
	maxPayload := limit - lp.Size
	if lp.Adjust < -(1<<32) || lp.Adjust > maxPayload {
		panic(fmt.Sprintf("codec: %s: LengthPrefix.Adjust is %d; want -(1<<32) to max-Size (%d)", fn, lp.Adjust, maxPayload))
	}
	lc := lengthCodec{size: lp.Size, order: lp.Order, adjust: lp.Adjust, max: limit}
	if lc.order == nil {
		lc.order = binary.BigEndian
	}
	if lp.Adjust < 0 {
		lc.minV = uint64(-lp.Adjust)
	} else {
		lc.plus = lp.Adjust
	}
	lc.maxV = uint64(maxPayload) + lc.minV - uint64(lc.plus) // maxPayload - Adjust, without overflow
	if lp.Size < 8 {
		lc.maxV = min(lc.maxV, 1<<(8*lp.Size)-1)
	}
	return lc
}

// LengthPrefixed returns a split function for length-prefixed frames: a
// header as lp describes, then a payload of the length it gives. Each
// message is the payload, without the header. A frame, header included, is
// at most max bytes, and a header that announces more is an error that
// wraps ErrFrameTooLong at once, before any of the payload is buffered or
// allocated. A header whose adjusted value is negative is an error that
// wraps ErrMalformed. Input that ends inside a frame is an error that wraps
// io.ErrUnexpectedEOF.
//
// LengthPrefixed panics if lp is not valid for max (see LengthPrefix).
func LengthPrefixed(lp LengthPrefix, max int) bufio.SplitFunc {
	lc := lp.check("LengthPrefixed", max)
	return func(data []byte, atEOF bool) (advance int, token []byte, err error) {
		if len(data) < lc.size {
			if atEOF && len(data) > 0 {
				return 0, nil, truncated(fmt.Sprintf("a %d-byte length header", lc.size), len(data))
			}
			return 0, nil, nil
		}
		v := lc.header(data)
		switch {
		case v < lc.minV:
			return 0, nil, malformed("length header %d is less than %d: Adjust %d makes the payload length negative", v, lc.minV, lc.adjust)
		case v > lc.maxV:
			return 0, nil, tooLong("length header %d (Adjust %d) announces a frame over max %d bytes", v, lc.adjust, lc.max)
		}
		end := lc.size + int(v-lc.minV) + lc.plus
		if len(data) < end {
			if atEOF {
				return 0, nil, truncated(fmt.Sprintf("a %d-byte frame", end), len(data))
			}
			return 0, nil, nil
		}
		return end, data[lc.size:end:end], nil
	}
}

// zeros makes room for a header.
var zeros [8]byte

// header reads the length header at the start of data.
func (lc *lengthCodec) header(data []byte) uint64 {
	switch lc.size {
	case 1:
		return uint64(data[0])
	case 2:
		return uint64(lc.order.Uint16(data))
	case 4:
		return uint64(lc.order.Uint32(data))
	}
	return lc.order.Uint64(data)
}

// LengthPrefixedEncoder returns the Encoder for LengthPrefixed(lp, max): it
// appends the header, then the message. It refuses a message whose frame
// would be over max bytes, or whose length the header cannot hold (both
// wrap ErrFrameTooLong), and one shorter than a positive lp.Adjust
// (ErrMalformed).
//
// LengthPrefixedEncoder panics if lp is not valid for max.
func LengthPrefixedEncoder(lp LengthPrefix, max int) Encoder {
	lc := lp.check("LengthPrefixedEncoder", max)
	return func(dst, msg []byte) ([]byte, error) {
		if len(msg) > lc.max-lc.size {
			return dst, tooLong("a message of %d bytes and its %d-byte header is over max %d", len(msg), lc.size, lc.max)
		}
		if len(msg) < lc.adjust {
			return dst, malformed("a message of %d bytes is shorter than Adjust %d", len(msg), lc.adjust)
		}
		v := uint64(len(msg)) + lc.minV - uint64(lc.plus) // len(msg) - Adjust
		if v > lc.maxV {
			return dst, tooLong("a message of %d bytes does not fit a %d-byte length header (Adjust %d)", len(msg), lc.size, lc.adjust)
		}
		start := len(dst)
		dst = append(dst, zeros[:lc.size]...)
		h := dst[start:]
		switch lc.size {
		case 1:
			h[0] = byte(v)
		case 2:
			lc.order.PutUint16(h, uint16(v))
		case 4:
			lc.order.PutUint32(h, uint32(v))
		default:
			lc.order.PutUint64(h, v)
		}
		return append(dst, msg...), nil
	}
}
