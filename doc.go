// Package tcpkit is a toolkit for TCP and Unix-domain-socket servers and
// clients, built on the event model of Node's net module. A connection is
// a [Conn] whose events (data, end, drain, timeout, error, close) reach
// typed callbacks; a [Server] accepts connections and calls a [Handler] for
// each, as net.createServer does; a [Dialer] makes client connections, as
// net.connect does. Around that model tcpkit adds what Node leaves to the
// user: write queues with a bound ([ConnConfig.MaxBuffered]), [Pipe] with
// backpressure, half-close done right, idle timeouts that close, graceful
// shutdown ([Server.Shutdown]), reuse of stale Unix socket files, and one
// address grammar ([ParseAddr]) for TCP and Unix sockets alike.
//
// # The echo server
//
// The Node tutorial's echo server, in Go:
//
//	srv := tcpkit.NewServer(func(c *tcpkit.Conn) {
//		log.Println("client connected")
//		c.OnEnd(func() { log.Println("client disconnected") })
//		c.WriteString("hello\r\n")
//		tcpkit.Pipe(c, c)
//	})
//	srv.Addr = ":8124" // or "unix:/tmp/echo.sock"
//	srv.OnListening = func(addr net.Addr) { log.Println("server bound", addr) }
//	log.Fatal(srv.ListenAndServe())
//
// Try it with "telnet localhost 8124" or "nc -U /tmp/echo.sock".
//
// # Why the API has this shape
//
// A [Handler] is a connection listener, func(c *Conn), like the function
// passed to net.createServer. It runs once per connection, before
// any other event, and registers typed callbacks with [Conn.OnData],
// [Conn.OnEnd], [Conn.OnDrain], [Conn.OnTimeout], [Conn.OnError] and
// [Conn.OnClose]. The same Handler type serves accepted connections and
// dialled ones (where it plays Node's connect listener).
//
// Per-connection state lives in the closures the Handler creates, as it
// does in Node: a line buffer, a session, a counter are local variables of
// the Handler. No global map keyed by connection, and no lock, is needed,
// because all callbacks of one Conn run one at a time (see Goroutines).
//
// The On methods add listeners, as Node's socket.on does; they never
// replace one. That is what lets [Pipe] compose with the user's own
// listeners: Pipe(c, c) adds OnData, OnEnd and OnDrain listeners, and the
// echo server's own OnEnd listener still runs. Events are typed methods, not
// strings: a misspelt event is a compile error, and a callback has the
// parameters of its event (func(p []byte), func(err error)), with no
// emitter, reflection or interface{} arguments in between.
//
// # Events and their order
//
// The events of one connection come in this order:
//
//	Handler(c)  --->  OnData*  --->  [OnEnd]  --->  [OnError(err)]  --->  OnClose(err)
//	(connection,      zero or        the peer's     at most once,         exactly once,
//	 or connect       more times     FIN, after     only if err != nil    always last
//	 after Dial)                     its data
//	     |                                      |
//	     +-- OnDrain, OnTimeout: any number ----+
//	         of times, anywhere in between
//
// In words:
//   - The Handler runs first, once. For a Dialer it runs once connected.
//   - OnData listeners see the bytes in the order they arrived. None fire
//     while the connection is paused, and none after OnEnd.
//   - OnEnd fires at most once, when the peer has sent FIN and every byte
//     before it has been delivered; while paused, it waits for Resume. A
//     reset or a local Close has no OnEnd.
//   - OnDrain and OnTimeout may fire after the Handler and before OnError
//     or OnClose, including after OnEnd. So may OnShutdown, once, when
//     Server.Shutdown begins, for a connection that has such a listener.
//   - OnError fires at most once, directly before OnClose, with the same
//     error, and only if that error is not nil.
//   - OnClose fires exactly once and always last. Its err is nil after a
//     clean close (both sides ended, or Close or Reset called) and the
//     cause otherwise: a reset by the peer, a failed write, ErrSlowConsumer,
//     ErrIdleTimeout, a *PanicError, or ErrServerClosed. After it, [Conn.Done]
//     is closed and [Conn.Err] returns the same err.
//   - A connection that tcpkit itself fails (a read or write error,
//     ErrSlowConsumer, a panic in a callback, ErrIdleTimeout with bytes
//     still queued) ends with a TCP reset, not a FIN: its peer learns that
//     it was cut off rather than seeing an orderly end. A reset the peer
//     sends after its own FIN, while the connection is half-open, is
//     reported too (the close error is ECONNRESET).
//
// Listeners of one event run in the order they were added. A listener added
// from inside a callback takes effect from the next event on.
//
// # Goroutines
//
// All callbacks of one Conn, the Handler included, run on one goroutine, one
// at a time: two callbacks of the same Conn never run at once. Under the
// goroutine engine, the default, that is the connection's own goroutine,
// the one that runs its read loop. Under the epoll engine, it is one of a
// few event-loop goroutines, shared by many connections, so a callback
// that blocks stalls every connection on that loop (see Engines).
// Callbacks that follow two rules work under both:
//
//   - Never block in a callback: no blocking I/O, no Dial (it waits for the
//     connect), no waiting on a channel or a lock held elsewhere, no
//     time.Sleep, no Server.Shutdown (it waits for this very connection to
//     close).
//   - Hand long work to another goroutine, and Write the result from there:
//     Write never blocks and is safe from any goroutine.
//
// Every method of a Conn is safe for concurrent use from any goroutine. The
// On methods add listeners; listeners added in the Handler see every event,
// while one added later, say from another goroutine, sees the events after
// it was added (an OnClose added after the close event runs at once). That
// is what lets [Pipe] join two connections from either one's goroutine.
//
// Nothing in the API assumes a goroutine per connection: there is no
// blocking Read, the Handler returns at once, Write queues rather than
// waits, and state lives in closures rather than on a goroutine's stack.
// A Handler written to these rules runs unchanged under either engine.
//
// A Server's own callbacks run elsewhere: OnListening, OnError and OnDrop on
// the goroutine that runs Serve for the listener concerned (so, with several
// listeners, possibly at once); OnClose on the goroutine that closed the
// last connection or called Close.
//
// # Engines
//
// An [Engine] runs connections: it reads their sockets, flushes their write
// queues and delivers their events. The event rules above are written once
// and hold on every engine; [Server.Engine] and [Dialer.Engine] choose one.
//
//   - [GoroutineEngine], the default (a nil Engine), gives each connection a
//     goroutine of its own, blocking in Go's netpoller, and a writer
//     goroutine while its queue has bytes. It forgives callbacks that block:
//     only their own connection waits. A waiting connection holds no read
//     buffer (about 7 KiB per idle connection, as with package net).
//   - The epoll engine ([NewEpollEngine], Linux only) runs connections on a
//     few event loops, one per CPU by default, each with one read buffer
//     shared by its connections (under 2 KiB per idle connection). A
//     callback that blocks holds up its whole loop; one that holds it longer
//     than EpollConfig.BlockingThreshold (100ms) is logged once per
//     connection and counted ([EpollEngine.SlowCallbacks]). A peer cannot
//     hold up a loop: in each turn of the loop a connection gets at most
//     one read buffer of input (8 reads at most), 1 MiB of output and 16
//     rounds of posted events; one with more to do goes on in the next
//     turn, after the loop's other ready connections and its timers. Nor
//     can a TLS handshake: it runs on a goroutine of its own, whose
//     tls.Config callbacks may take their time, and no loop waits for it.
//     It needs listeners and connections with file descriptors: serving a
//     net.Listener without one is an error, not a quiet fallback.
//
// Pick the goroutine engine for handlers that call blocking code, and the
// epoll engine for very many connections whose handlers never block, such
// as proxies, echo and chat servers: tcpkit echo uses it on Linux.
//
// # Data has no message boundaries
//
// TCP delivers a stream of bytes, not messages. As the Node tutorial warns,
// one write on one side does not mean one data event on the other: one Write
// may arrive as several OnData calls, and several small Writes may arrive as
// one, with Nagle's algorithm on or off (the tutorial's client often gets
// the greeting "hello\r\n" and the echoed "world!\r\n" in one data
// event). A protocol needs framing, a length prefix or a delimiter; keep
// the partial message in the Handler's closure:
//
//	var buf []byte
//	c.OnData(func(p []byte) {
//		buf = append(buf, p...)
//		for {
//			line, rest, ok := bytes.Cut(buf, []byte("\n"))
//			if !ok {
//				break
//			}
//			handle(line)
//			buf = rest
//		}
//	})
//
// The slice p passed to OnData is valid only until the listener returns:
// the connection reuses it for the next read. Copy what you keep (append
// does), and never hand p itself to another goroutine.
//
// TCP urgent data (a byte sent with MSG_OOB) is not part of the stream, as
// with Go's net and Node: the bytes before and after it are delivered, on
// either engine, and the urgent byte itself is not.
//
// # Backpressure
//
// [Conn.Write] never blocks. It hands the bytes to the kernel at once if it
// can, and queues the rest for a writer that sends them as the socket
// accepts them; [Conn.Buffered] reports the queue. It returns len(p), nil,
// keeping io.Writer's contract. The queue is watched by three marks of
// [ConnConfig]:
//
//   - HighWater (64 KiB): once the queue goes over it, OnDrain is armed.
//   - LowWater (HighWater/4): an armed OnDrain fires when the queue falls to
//     it. Stop writing above HighWater, start again on OnDrain.
//   - MaxBuffered (4 MiB): a Write that would take the queue over it closes
//     the connection with ErrSlowConsumer, and returns that error, so a peer
//     that has stopped reading costs at most MaxBuffered bytes. This holds
//     for a single large Write too: write big payloads in pieces.
//
// [Pipe](dst, src) applies these rules for you: it pauses src while dst's
// queue is over HighWater and resumes it on dst's OnDrain. [Conn.Pause]
// stops reading, so the kernel's receive buffer fills and TCP flow control
// slows the peer down.
//
// # Half-close
//
// By default a connection behaves as Node's allowHalfOpen: false. When the
// peer's FIN arrives, the OnEnd listeners run (a Write inside them is still
// sent), then the connection ends its own side itself: it flushes its
// queue, sends FIN and closes. That is why Pipe(c, c) is a correct echo. With
// [ConnConfig.AllowHalfOpen] set, the connection stays writable after the
// peer's FIN until the Handler calls [Conn.End]. Either way, End sends FIN
// once the queue is flushed and leaves the connection readable; it closes
// once both sides have ended.
//
// # Timeouts
//
// [ConnConfig.Timeout] and [Conn.SetTimeout] are Node's socket.setTimeout: a
// notification. OnTimeout fires after that long without traffic in either
// direction, once per idle period, and the connection stays open unless the
// listener closes it. [ConnConfig.IdleTimeout] is what most servers want
// instead: it closes an idle connection, with ErrIdleTimeout. TCP
// keep-alive ([ConnConfig.KeepAlive], 15s by default) detects a peer that
// vanished without a FIN or a reset.
//
// # Shutdown
//
// [Server.Close] has the semantics of Node's server.close(): it stops
// accepting at once (a Unix socket file is removed) and leaves open
// connections alone; the Server's OnClose fires, and [Server.Done] is
// closed, when the last one has closed and the Serve loops have returned.
// Close may be called from anywhere, a server callback included.
// [Server.Shutdown](ctx) is the graceful version: it calls Close, then ends
// each connection with End once it has been idle for [Server.ShutdownIdle]
// (1s by default: no byte read or written, nothing queued, no input waiting
// unread, not paused), and
// waits for every connection to close. TCP keeps no message boundaries, so
// a pause is the only sign that a transfer is over; the default outlasts
// the pauses of a client streaming in bursts, which therefore finishes
// whole. The decision is made on the connection's own goroutine between
// callbacks, so a callback busy computing a reply is never ended under.
// A connection's peer that keeps sending after that End is reset by
// [Pipe] (its input cannot be passed on), not silently ignored. If ctx
// ends first, Shutdown resets the rest, so that each peer knows it was cut
// off, with a close error that wraps ErrServerClosed, and returns
// ctx.Err(). A Write after such a connection has closed returns an error
// that wraps both net.ErrClosed and ErrServerClosed. Shutdown sees bytes,
// not messages: a connection whose reply is being computed on another
// goroutine would look idle. A protocol that
// knows better adds an [Conn.OnShutdown] listener: Shutdown then sends that
// connection the shutdown event instead, and leaves the End to it.
// Serve and
// ListenAndServe return ErrServerClosed after either. A Server is not
// reused after Close; make a new one.
//
//	go func() {
//		if err := srv.ListenAndServe(); !errors.Is(err, tcpkit.ErrServerClosed) {
//			log.Fatal(err)
//		}
//	}()
//	<-ctx.Done() // ctx from signal.NotifyContext
//	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
//	defer cancel()
//	srv.Shutdown(sctx)
//
// # TLS and the PROXY protocol
//
// [Server.TLS] and [Dialer.TLS] make connections speak TLS; they are
// options, not wrappers, so everything else keeps working: socket options
// act on the socket underneath, OnData delivers plaintext, Write encrypts,
// End sends close_notify and then FIN, and Pipe's backpressure holds. On
// both engines, TLS runs over the bytes the engine itself reads and
// writes: the handshake on a short-lived goroutine of its own, which waits
// for the engine to read more; after it, records are decrypted on the
// connection's event goroutine (an epoll loop, on the epoll engine) as they
// arrive. Conn.TLS returns the negotiated state. Buffered and the drain
// marks (HighWater, LowWater) count plaintext, as written: a record's
// plaintext counts until the whole record has gone to the kernel.
// MaxBuffered, which bounds memory, and BytesRead and BytesWritten count
// bytes on the wire, that is records: plaintext plus 22 to 29 bytes per
// record of up to 16 KiB.
//
// [Server.ProxyProtocol] reads a PROXY protocol header (v1 or v2, as
// HAProxy and cloud load balancers send it) from the bytes the engine reads,
// without blocking; the header's addresses become RemoteAddr and LocalAddr,
// and the limits by address apply to the real client.
//
// Each connection goes socket, PROXY header, TLS handshake, Handler; each
// stage has its own timeout and runs off the accept path, so a client that
// connects and says nothing delays no one else. A failure closes only that
// connection with a [*HandshakeError], which reaches
// [Server.OnHandshakeError] and is counted ([Server.HandshakeErrors]).
//
// # Nagle's algorithm
//
// Connections start with TCP_NODELAY set, as Go's net package does; Node
// leaves Nagle's algorithm on. Nagle holds back a small segment until the
// previous one is acknowledged, and with the peer's delayed ACK that adds
// tens of milliseconds to each small request/response exchange, the very
// traffic of echo servers and most protocols. The Node tutorial itself
// warns that Nagle delays data and has you call setNoDelay(true) to send
// each write at once. Little is lost for bulk data: the writer sends
// everything queued in one system call. Set [ConnConfig.Nagle] to turn
// Nagle back on; [Conn.SetNoDelay] works both ways (true: off, false: on).
//
// # Node to Go
//
// Every row of Node's net reference, and its counterpart here ("none" says
// why there is none; "not yet" is a planned gap):
//
//	Server
//	net.createServer([opts][, fn])    NewServer(h) or &Server{Handler: h}; opts are Server fields
//	allowHalfOpen                     ConnConfig.AllowHalfOpen (Server embeds ConnConfig)
//	pauseOnConnect                    ConnConfig.PauseOnConnect, then Conn.Resume
//	noDelay                           on by default; ConnConfig.Nagle turns Nagle back on
//	keepAlive, keepAliveInitialDelay  ConnConfig.KeepAlive (default 15s, negative: off)
//	highWaterMark                     ConnConfig.HighWater/LowWater (write), ReadBufferSize (read)
//	blockList                         not yet; check c.RemoteAddr() with netip.Prefix in the Handler
//	'listening'                       Server.OnListening(addr)
//	'connection'(socket)              Server.Handler
//	'close'                           Server.OnClose, Server.Done()
//	'error'(err)                      returned by Listen, ListenAndServe, Serve; Server.OnError
//	                                  for accept errors the Server retries after
//	'drop'(data)                      Server.OnDrop(Drop{LocalAddr, RemoteAddr})
//	server.listen(port, host, ..cb)   Addr "host:port" + ListenAndServe, or Listen + Serve;
//	                                  cb is OnListening; no host: ":port", dual-stack
//	  backlog                         none: Go uses the kernel's somaxconn
//	server.listen(path)               Addr "unix:/tmp/echo.sock" or any path with a '/'
//	listen({readableAll, writableAll})  Server.SocketMode, ListenConfig.SocketMode
//	listen({ipv6Only})                not yet; dual-stack only (or Serve your own net.Listener)
//	listen({exclusive})               none: Go has no cluster module
//	listen({signal})                  context.AfterFunc(ctx, func() { srv.Close() })
//	listen({reusePort})               not yet (or Serve your own net.Listener)
//	path length > 107                 *AddrError from ParseAddr, Listen and Dial
//	server.close([cb])                Server.Close, then OnClose; Server.Shutdown(ctx)
//	who unlinks                       Close removes the file; Listen reuses a stale one
//	server.address()                  OnListening's addr, or the Listener's Addr()
//	server.getConnections(cb)         Server.NumConns()
//	server.maxConnections             Server.MaxConnections (0: no cap)
//	server.listening                  none: Serve is running between OnListening and its return
//	server.ref()/unref()              none: Go has no event loop to keep alive
//	server[Symbol.asyncDispose]       defer srv.Close(), or Shutdown
//
//	Socket
//	'connect' / 'ready'               the Handler passed to Dial
//	'lookup'                          none: Dial resolves; a failure is Dial's *net.OpError
//	'data'                            Conn.OnData(func(p []byte))
//	'end'                             Conn.OnEnd(func())
//	'drain'                           Conn.OnDrain(func())
//	'error'                           Conn.OnError(func(err error)), optional
//	'close'(hadError)                 Conn.OnClose(func(err error)); hadError is err != nil
//	'timeout'                         Conn.OnTimeout(func())
//	connectionAttempt* events         none: Go's Dialer races addresses internally
//	write(data[, enc][, cb])          Conn.Write, Conn.WriteString; no cb; false: not yet (see Buffered)
//	end([data][, enc][, cb])          Conn.Write, then Conn.End
//	destroy()                         Conn.Close (the close error is nil)
//	destroy(err)                      Conn.CloseWithError(err); Conn.EndWithError(err, d) sends what
//	                                  is queued first, then closes with err
//	destroySoon()                     Conn.End: the connection closes when the peer ends too
//	resetAndDestroy()                 Conn.Reset
//	pause() / resume() / isPaused()   Conn.Pause, Conn.Resume, Conn.Paused
//	setEncoding(enc)                  none: Go works in bytes; string(p), unicode/utf8
//	setTimeout(ms[, cb])              Conn.SetTimeout(d) + Conn.OnTimeout; ConnConfig.Timeout
//	setNoDelay([bool])                Conn.SetNoDelay(bool)
//	setKeepAlive([enable][, delay])   Conn.SetKeepAlive(enable, period)
//	bytesRead / bytesWritten          Conn.BytesRead, Conn.BytesWritten (bytes the kernel took)
//	remoteAddress/Port/Family         Conn.RemoteAddr() (*net.TCPAddr: IP, Port; or *net.UnixAddr)
//	localAddress/Port/Family          Conn.LocalAddr()
//	readyState                        none: track it in closures (OnEnd, End, OnClose) or Done()
//	connecting / pending              none: a Conn exists only once connected
//	allowHalfOpen                     ConnConfig.AllowHalfOpen
//	bufferSize / writableLength       Conn.Buffered()
//	socket.server                     none: the Handler's closure can hold the *Server
//	socket.ref()/unref()              none: Go has no event loop to keep alive
//	socket.address()                  Conn.LocalAddr()
//
//	Client connect
//	net.connect(port, host, cb)       Dial(ctx, "host:port", h) or Dialer.Dial; h is cb
//	net.connect({path})               Dial(ctx, "unix:/tmp/echo.sock", h)
//	host, port                        the address string; "8124" dials the local system; every
//	                                  address a name resolves to is tried, so localhost finds 127.0.0.1
//	family, hints, lookup             none: dial an IP literal to pick a family; Go's resolver
//	localAddress, localPort           Dialer.LocalAddr
//	autoSelectFamily[AttemptTimeout]  Dialer.FallbackDelay (Go's RFC 6555 race, 300ms)
//	timeout                           Dialer's ConnConfig.Timeout (ConnectTimeout bounds a connect)
//	noDelay, keepAlive, ...Delay      Dialer's ConnConfig.Nagle, ConnConfig.KeepAlive
//	allowHalfOpen                     Dialer's ConnConfig.AllowHalfOpen
//	onread                            none: OnData already reads into one reused buffer
//	signal                            ctx bounds the connect; then AfterFunc(ctx, func() { c.Close() })
//	fd, readable, writable            not yet: no way to wrap an existing net.Conn
//	blockList                         none: check the address before Dial
//	socket.connect() again            Dial again: a Conn is never reused
//
//	Utilities
//	net.isIP(s)                       netip.ParseAddr(s) (or net.ParseIP)
//	net.isIPv4 / net.isIPv6           netip.ParseAddr(s), then Is4 / Is6
//	net.BlockList                     netip.Prefix.Contains (Unmap IPv4-mapped addresses first)
//	net.SocketAddress                 netip.AddrPort, net.TCPAddr; ParseAddr for tcpkit's grammar
//	get/setDefaultAutoSelectFamily*   none: no process globals; set Dialer.FallbackDelay
//
// # Deliberate differences from Node
//
//   - Nagle is off by default (see Nagle's algorithm): latency first, as Go
//     does.
//   - TCP keep-alive is on, every 15s, as Go does (Node: off), so a peer
//     that vanished is found within minutes and its connection closed.
//   - A stale Unix socket file, one that nothing accepts on, as a crash
//     leaves behind, is removed and its path reused. Node fails with
//     EADDRINUSE, so the tutorial's server cannot restart after a crash. A
//     live socket, or a file that is not a socket, is left untouched and is
//     still EADDRINUSE.
//   - A Unix socket path longer than 107 bytes is an *AddrError. Node 20
//     truncates it silently, then cannot remove the file it made.
//   - MaxConnections 0 means no cap, so that the zero Server works (Node 21
//     and later drop every connection). Drops go to OnDrop or, the first
//     of each run, to the log: never silently.
//   - BytesWritten counts only the bytes handed to the kernel; Buffered
//     holds the rest (Node counts both), so the count means "sent".
//   - Timeout only notifies, as in Node; IdleTimeout closes. Node has only
//     the first, and users expect the second.
//   - Write after End returns ErrWriteAfterEnd to its caller and changes
//     nothing else: what was queued is still sent. Node emits an error event
//     later and destroys the socket, dropping whatever it had not sent.
//   - OnError is optional. An error with no listener never crashes the
//     process: it reaches OnClose and Err. The tutorial's server has no
//     error listener on its sockets, so one client's ECONNRESET kills it.
//   - A panic in a callback is recovered and logged with its stack, and
//     closes only that connection, with a *PanicError; the other
//     connections carry on.
//   - OnEnd fires even with no OnData listener: a connection always reads
//     unless paused (data nobody listens for is dropped, as in Node), so the
//     peer's FIN is seen and the connection closes. Node never emits 'end'
//     for a socket whose data nobody consumes.
//   - "localhost:PORT" listens on 127.0.0.1 and ::1 both (ListenAll), so a
//     client that resolves localhost to ::1 first is not refused, as it is
//     by a Node server listening on 127.0.0.1 (nodejs/node#40702).
//   - One Server can serve several addresses: call Serve once per listener
//     (Node: one listen per server). OnListening fires for each; Close
//     closes them all.
//   - LocalAddr and RemoteAddr stay readable after close (Node's
//     remoteAddress turns undefined), so OnClose can log them. An IPv4 peer
//     of a dual-stack listener shows as 127.0.0.1, not ::ffff:127.0.0.1.
//   - Close is idempotent: Server.Close on a closed or never-started Server,
//     and Conn.Close or Reset on a closed Conn, return nil (Node's close
//     callback gets ERR_SERVER_NOT_RUNNING). One OnClose fires regardless.
//   - Listening is Go's, not Node's: ListenAndServe and Serve block until
//     Close, and listen errors such as EADDRINUSE are returned, not emitted
//     as an event that the listen callback never sees. OnListening is the
//     'listening' event and carries the bound address (port 0). Listen then
//     Serve splits binding from serving.
//   - A failed Dial returns its error and no Conn: there are no error and
//     close events for a connection that never existed.
//   - Reset on a Unix socket, which has no RST, is Close (Node throws).
//   - Dialer.ConnectTimeout aborts a slow connect; Node's timeout option
//     does not (it is ConnConfig.Timeout, the idle notification).
//   - The write queue is bounded by MaxBuffered; Node's grows until the
//     process runs out of memory.
package tcpkit
