package codec_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"time"

	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/codec"
)

// A Framer gives one call per line, however the bytes were cut, as they are
// by TCP: here as data events "hel", "lo\nwor", ... would bring them.
func ExampleNewFramer() {
	f := codec.NewFramer(codec.Lines(64), 64, func(line []byte) {
		fmt.Printf("%q\n", line) // line is valid only during this call
	})
	for _, chunk := range []string{"hel", "lo\nwor", "ld\r\nhow are", " you?\nbye"} {
		if err := f.Feed([]byte(chunk)); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("waiting for the rest of", f.Buffered(), "bytes")
	if err := f.End(); err != nil { // at the peer's FIN: the last line needs no LF
		log.Fatal(err)
	}
	// Output:
	// "hello"
	// "world"
	// "how are you?"
	// waiting for the rest of 3 bytes
	// "bye"
}

// The same split works in a bufio.Scanner, for blocking reads.
func ExampleLengthPrefixed() {
	lp := codec.LengthPrefix{Size: 2, Order: binary.BigEndian}
	enc := codec.LengthPrefixedEncoder(lp, 1024)
	var stream []byte
	for _, msg := range []string{"first", "", "third"} {
		stream, _ = enc(stream, []byte(msg))
	}
	fmt.Printf("% x\n", stream)

	sc := bufio.NewScanner(bytes.NewReader(stream))
	sc.Buffer(nil, 1024)
	sc.Split(codec.LengthPrefixed(lp, 1024))
	for sc.Scan() {
		fmt.Printf("%q\n", sc.Text())
	}
	fmt.Println("err:", sc.Err())
	// Output:
	// 00 05 66 69 72 73 74 00 00 00 05 74 68 69 72 64
	// "first"
	// ""
	// "third"
	// err: <nil>
}

// A length header that announces more than max is refused at once, before
// any of the payload is read or memory set aside for it.
func ExampleLengthPrefixed_tooLong() {
	f := codec.NewFramer(codec.LengthPrefixed(codec.LengthPrefix{Size: 4}, 1<<20), 1<<20, func([]byte) {})
	err := f.Feed([]byte{0xff, 0xff, 0xff, 0xff}) // 4 GiB
	fmt.Println(errors.Is(err, codec.ErrFrameTooLong))
	fmt.Println(err)
	// Output:
	// true
	// codec: frame too long: length header 4294967295 (Adjust 0) announces a frame over max 1048576 bytes
}

// Encoders append a frame to a buffer, and refuse a message that would not
// come back as it went in.
func ExampleLengthPrefixedEncoder() {
	enc := codec.LengthPrefixedEncoder(codec.LengthPrefix{Size: 1}, 1024)
	buf, err := enc(nil, []byte("hi"))
	fmt.Printf("% x %v\n", buf, err)
	_, err = enc(buf[:0], make([]byte, 300))
	fmt.Println(err)
	// Output:
	// 02 68 69 <nil>
	// codec: frame too long: a message of 300 bytes does not fit a 1-byte length header (Adjust 0)
}

func ExampleLinesEncoder() {
	enc := codec.LinesEncoder(16)
	var buf []byte
	for _, line := range []string{"hello", "two\nlines", "far too long for 16 bytes"} {
		var err error
		if buf, err = enc(buf, []byte(line)); err != nil {
			fmt.Println(err)
		}
	}
	fmt.Printf("%q\n", buf)
	// Output:
	// codec: malformed frame: the line contains an LF at offset 3
	// codec: frame too long: a line of 25 bytes and its line end is over max 16
	// "hello\n"
}

func ExampleDelimited() {
	sc := bufio.NewScanner(strings.NewReader("one\x00two\x00three"))
	sc.Split(codec.Delimited([]byte{0}, 64))
	for sc.Scan() {
		fmt.Println(sc.Text())
	}
	// Output:
	// one
	// two
	// three
}

func ExampleFixed() {
	f := codec.NewFramer(codec.Fixed(4), 4, func(frame []byte) { fmt.Printf("%s\n", frame) })
	for _, chunk := range []string{"abcdefg", "hijklm"} {
		if err := f.Feed([]byte(chunk)); err != nil {
			fmt.Println("Feed:", err)
		}
	}
	fmt.Println(f.End())
	// Output:
	// abcd
	// efgh
	// ijkl
	// codec: input ends inside a 4-byte frame, after 1 of its bytes: unexpected EOF
}

// A line server: each line comes back in upper case; a line over the
// limit gets an error line, and only that connection is closed.
func ExampleFramer_Attach() {
	closed := make(chan struct{})
	srv := tcpkit.NewServer(func(c *tcpkit.Conn) {
		f := codec.NewFramer(codec.Lines(32), 32, func(line []byte) {
			c.Write(append(bytes.ToUpper(line), '\n'))
		})
		f.Reply = func(err error) []byte { return []byte("error: line too long\n") }
		f.Attach(c)
		c.OnClose(func(err error) { fmt.Println("server: closed:", err); close(closed) })
	})
	ln, err := tcpkit.Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	nc, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second)) // a test never hangs
	for _, chunk := range []string{"hello\nwor", "ld\n" + strings.Repeat("x", 100) + "\n"} {
		if _, err := nc.Write([]byte(chunk)); err != nil {
			fmt.Println("client: write:", err)
		}
	}
	reply, err := io.ReadAll(nc) // up to the server's FIN
	fmt.Print(string(reply))
	if err != nil {
		fmt.Println("client: read:", err)
	}
	nc.Close() // the server closes once we have ended too
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		fmt.Println("server: still open 10s after the client closed")
	}
	// Output:
	// HELLO
	// WORLD
	// error: line too long
	// server: closed: codec: frame too long: no line end in the first 32 bytes (max 32)
}
