//go:build !linux

package tcpkit

import (
	"errors"
	"log/slog"
	"time"
)

// EpollConfig holds the settings of an epoll engine, which needs Linux.
type EpollConfig struct {
	Loops             int
	ReadBufferSize    int
	BlockingThreshold time.Duration
	Logger            *slog.Logger
}

// An EpollEngine runs connections on event loops over epoll, which needs
// Linux: see Engine.
type EpollEngine struct{ Engine }

// NewEpollEngine reports that the epoll engine needs Linux.
func NewEpollEngine(EpollConfig) (*EpollEngine, error) {
	return nil, errors.New("tcpkit: the epoll engine needs Linux; use the goroutine engine (a nil Engine) here")
}

// SlowCallbacks returns 0: there is no epoll engine here.
func (e *EpollEngine) SlowCallbacks() int64 { return 0 }

// Close does nothing: there is no epoll engine here.
func (e *EpollEngine) Close() error { return nil }
