package tcpkit

// listeners holds a connection's callbacks. A value is never changed once
// published: adding a listener publishes a new one, so that events read it
// without a lock. The first listener of each event is held inline, as most
// connections have at most one of each (Pipe adds one data, one end and
// one drain listener); the later ones are in more.
type listeners struct {
	data     func(p []byte)
	end      func()
	drain    func()
	timeout  func()
	shutdown func()
	err      func(err error)
	close    func(err error)
	more     *moreListeners // nil until an event has a second listener
}

// moreListeners holds the second and later listeners of each event, in the
// order they were added.
type moreListeners struct {
	data                          []func(p []byte)
	end, drain, timeout, shutdown []func()
	err, close                    []func(err error)
}

var (
	noListeners listeners // before the first listener is added
	noMore      moreListeners
)

// listeners returns c's published listeners.
func (c *Conn) listeners() *listeners {
	if l := c.ls.Load(); l != nil {
		return l
	}
	return &noListeners
}

// extras returns l's later listeners, empty if there are none.
func (l *listeners) extras() *moreListeners {
	if l.more != nil {
		return l.more
	}
	return &noMore
}

// addListener publishes a copy of c's listeners with add applied.
func (c *Conn) addListener(add func(l *listeners)) {
	c.lsMu.Lock()
	defer c.lsMu.Unlock()
	c.addListenerLocked(add)
}

// addListenerLocked is addListener with c.lsMu held.
func (c *Conn) addListenerLocked(add func(l *listeners)) {
	l := *c.listeners()
	add(&l)
	c.ls.Store(&l)
}

// addMore returns a copy of l.more, now l's, for an add to append to. The
// copy shares its slices' arrays with the published value, whose readers
// see only up to their own lengths: an append writes past them, or copies.
func (l *listeners) addMore() *moreListeners {
	m := new(moreListeners)
	*m = *l.extras()
	l.more = m
	return m
}

// emit calls an event's listeners in turn, first then rest, stopping if one
// closes the connection.
func (c *Conn) emit(first func(), rest []func()) {
	if first == nil {
		return // rest is empty too: the first slot fills first
	}
	first()
	for _, f := range rest {
		if c.isClosing() {
			return
		}
		f()
	}
}

// emitData delivers p to the data listeners, as emit does.
func (c *Conn) emitData(p []byte) {
	ls := c.listeners()
	if ls.data == nil {
		return
	}
	ls.data(p)
	for _, f := range ls.extras().data {
		if c.isClosing() {
			return
		}
		f(p)
	}
}

// closeListener returns the i-th close listener, or nil past the last.
func (l *listeners) closeListener(i int) func(error) {
	switch rest := l.extras().close; {
	case i == 0:
		return l.close
	case i <= len(rest):
		return rest[i-1]
	}
	return nil
}
