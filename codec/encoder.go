package codec

// An Encoder frames one message for writing: it appends the frame (the
// message and its framing) to dst and returns the extended slice, as
// strconv.AppendInt and binary.Append do. dst may be nil; reusing a
// buffer, as in buf, err = enc(buf[:0], msg), makes encoding allocation
// free once the buffer is large enough.
//
// An Encoder refuses a message that its decoder would not give back
// unchanged: one over the maximum frame size, or that its length header
// cannot express (errors that wrap ErrFrameTooLong), or that contains the
// delimiter (ErrMalformed). It then returns dst unchanged and the error.
//
// Each decoder of this package has its Encoder: LinesEncoder,
// DelimitedEncoder, LengthPrefixedEncoder and FixedEncoder.
type Encoder func(dst, msg []byte) ([]byte, error)
