// Package epoll is the Linux readiness machinery under tcpkit's epoll
// engine: a Poller over one epoll instance, with an eventfd to wake it from
// other goroutines. It knows nothing of connections or of Node's events:
// it reports which registered descriptors are ready, by the token each was
// registered with, and that is all.
//
// Descriptors are registered once, edge-triggered, for reading, writing
// the peer's half-close and urgent data (EPOLLIN | EPOLLOUT | EPOLLRDHUP |
// EPOLLPRI | EPOLLET):
// the caller remembers readiness and reads or writes until EAGAIN, so that
// pausing a connection costs no system call.
package epoll
