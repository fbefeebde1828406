//go:build !linux

package main

// defaultEngine is tcpkit echo's engine: the goroutine engine, the epoll
// engine being Linux's.
const defaultEngine = "goroutine"
