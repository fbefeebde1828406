// Package metrics exports a tcpkit Server's Stats to Prometheus: register
// one Collector per server, and each scrape reads a fresh snapshot.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(metrics.NewCollector(srv, nil))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// The metrics, all prefixed tcpkit_:
//
//	connections_open                 gauge    connections open now
//	connections_accepted_total       counter  connections accepted, dropped ones included
//	connections_dropped_total        counter  by reason: max_connections, per_ip, rate, denied
//	connections_closed_total         counter  by cause: clean, peer_reset, idle_timeout,
//	                                          slow_consumer, handshake, panic, shutdown, other
//	received_bytes_total             counter  bytes read from the sockets
//	sent_bytes_total                 counter  bytes written to the sockets
//	queued_bytes                     gauge    bytes queued to write now
//	accept_errors_total              counter  failed accepts
//	loop_connections                 gauge    per epoll loop (label loop)
//	loop_lag_seconds                 gauge    per epoll loop: its longest turn in the last second
//	loop_slow_callbacks_total        counter  per epoll loop
//
// The core package does not import client_golang: only programs that
// import this one pay for it.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tcpkit/tcpkit"
)

// A Collector is a prometheus.Collector for one Server.
type Collector struct {
	srv *tcpkit.Server

	open, accepted, dropped, closed, received, sent, queued, acceptErrors *prometheus.Desc
	loopConns, loopLag, loopSlow                                          *prometheus.Desc
}

// NewCollector returns a Collector for srv. constLabels, which may be nil,
// are added to every metric: {"server": "echo"}, say, to tell several
// servers of one process apart.
func NewCollector(srv *tcpkit.Server, constLabels prometheus.Labels) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("tcpkit_"+name, help, labels, constLabels)
	}
	return &Collector{
		srv:          srv,
		open:         d("connections_open", "Connections open now."),
		accepted:     d("connections_accepted_total", "Connections accepted, those dropped at once included."),
		dropped:      d("connections_dropped_total", "Connections dropped at once by a limit.", "reason"),
		closed:       d("connections_closed_total", "Connections closed, by cause.", "cause"),
		received:     d("received_bytes_total", "Bytes read from the connections' sockets."),
		sent:         d("sent_bytes_total", "Bytes written to the connections' sockets."),
		queued:       d("queued_bytes", "Bytes queued to write now, across the open connections."),
		acceptErrors: d("accept_errors_total", "Failed accepts."),
		loopConns:    d("loop_connections", "Connections on an epoll event loop now.", "loop"),
		loopLag:      d("loop_lag_seconds", "The longest turn of an epoll event loop in the last second.", "loop"),
		loopSlow:     d("loop_slow_callbacks_total", "Connections whose callbacks held an epoll event loop too long.", "loop"),
	}
}

// Describe sends the descriptors of the metrics.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.open, c.accepted, c.dropped, c.closed, c.received, c.sent,
		c.queued, c.acceptErrors, c.loopConns, c.loopLag, c.loopSlow} {
		ch <- d
	}
}

// Collect sends the metrics of a fresh snapshot of the server's Stats.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.open, float64(st.Open))
	counter(c.accepted, st.Accepted)
	counter(c.dropped, st.Dropped.MaxConnections, "max_connections")
	counter(c.dropped, st.Dropped.PerIP, "per_ip")
	counter(c.dropped, st.Dropped.Rate, "rate")
	counter(c.dropped, st.Dropped.Denied, "denied")
	for _, k := range []struct {
		cause string
		n     int64
	}{
		{"clean", st.Closed.Clean}, {"peer_reset", st.Closed.PeerReset}, {"idle_timeout", st.Closed.IdleTimeout},
		{"slow_consumer", st.Closed.SlowConsumer}, {"handshake", st.Closed.Handshake}, {"panic", st.Closed.Panic},
		{"shutdown", st.Closed.Shutdown}, {"other", st.Closed.Other},
	} {
		counter(c.closed, k.n, k.cause)
	}
	counter(c.received, st.BytesIn)
	counter(c.sent, st.BytesOut)
	gauge(c.queued, float64(st.Queued))
	counter(c.acceptErrors, st.AcceptErrors)
	for i, l := range st.Loops {
		loop := strconv.Itoa(i)
		gauge(c.loopConns, float64(l.Conns), loop)
		gauge(c.loopLag, l.Lag.Seconds(), loop)
		counter(c.loopSlow, l.SlowCallbacks, loop)
	}
}
