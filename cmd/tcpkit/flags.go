package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/tcpkit/tcpkit"
)

// textValue is a flag holding a text with backslash escapes, decoded when
// the flag is set, so that a bad escape is reported as a bad value of that
// flag. It implements pflag.Value.
type textValue struct {
	raw   string // as typed
	bytes []byte // decoded
}

func newTextValue(def string) *textValue {
	b, err := unescape(def)
	if err != nil {
		panic("bad default for a text flag: " + err.Error())
	}
	return &textValue{raw: def, bytes: b}
}

// String returns the text as typed, escapes and all.
func (v *textValue) String() string { return v.raw }

// Set decodes s.
func (v *textValue) Set(s string) error {
	b, err := unescape(s)
	if err != nil {
		return err
	}
	v.raw, v.bytes = s, b
	return nil
}

// Type names the value in help.
func (v *textValue) Type() string { return "text" }

// choiceValue is a flag that takes one of a fixed set of words. It
// implements pflag.Value.
type choiceValue struct {
	value   string
	choices []string
}

// String returns the chosen word.
func (v *choiceValue) String() string { return v.value }

// Set checks that s is one of the choices.
func (v *choiceValue) Set(s string) error {
	for _, c := range v.choices {
		if s == c {
			v.value = s
			return nil
		}
	}
	return fmt.Errorf("must be %s", strings.Join(v.choices, " or "))
}

// Type names the value in help: the choices.
func (v *choiceValue) Type() string { return strings.Join(v.choices, "|") }

// newEngine returns the engine that --engine names: nil for the goroutine
// engine, or a new epoll engine, with the function that closes it (call it
// after the shutdown, once the connections have closed).
func newEngine(name string, log *slog.Logger) (tcpkit.Engine, func(), error) {
	if name != "epoll" {
		return nil, func() {}, nil
	}
	e, err := tcpkit.NewEpollEngine(tcpkit.EpollConfig{Logger: log})
	if err != nil {
		return nil, nil, failf("--engine epoll: %s", err)
	}
	return e, func() { e.Close() }, nil
}
