package main

// defaultEngine is tcpkit echo's engine: on Linux the epoll engine, since
// the echo handler never blocks.
const defaultEngine = "epoll"
