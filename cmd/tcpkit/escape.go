package main

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// unescape turns the backslash escapes of a command-line text into bytes:
// \r, \n, \t, \\ and \xHH (two hex digits, any byte). Any other backslash
// sequence, or a backslash at the end, is an error that quotes it.
func unescape(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			out = append(out, s[i])
			continue
		}
		if i+1 == len(s) {
			return nil, errors.New(`trailing backslash (write \\ for a backslash)`)
		}
		i++
		switch s[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf(`bad escape %s: \x needs two hex digits, as in \x1b`, s[i-1:])
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return nil, fmt.Errorf(`bad escape %s: \x needs two hex digits, as in \x1b`, s[i-1:i+3])
			}
			out = append(out, hi<<4|lo)
			i += 2
		default:
			_, size := utf8.DecodeRuneInString(s[i:])
			return nil, fmt.Errorf(`unknown escape %s (known: \r \n \t \\ \xHH)`, s[i-1:i+size])
		}
	}
	return out, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
