package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches url and parses it with Prometheus's own text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mf
}

// value returns the value of the metric name whose labels include want
// (label, value pairs), or -1.
func value(mf map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := mf[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	return -1
}

// TestEchoMetrics scrapes tcpkit echo --metrics while traffic moves, and
// checks that each counter moves as that traffic says it must.
func TestEchoMetrics(t *testing.T) {
	for _, engine := range serverEngines {
		t.Run(engine, func(t *testing.T) {
			e := startEcho(t, "--engine", engine, "--metrics", "127.0.0.1:0", "--deny", "127.0.0.2", "127.0.0.1:0")
			m := regexp.MustCompile(`url=(http://\S+/metrics)`).FindStringSubmatch(e.stderr.String())
			if m == nil {
				t.Fatalf("no metrics URL in the log:\n%s", e.stderr)
			}
			url := m[1]
			before := scrape(t, url)
			if v := value(before, "tcpkit_connections_accepted_total"); v != 0 {
				t.Fatalf("accepted before any traffic: %v", v)
			}

			// One client: greeting, 1000 bytes echoed, a clean end.
			nc, err := net.Dial("tcp", e.addr())
			if err != nil {
				t.Fatal(err)
			}
			nc.SetDeadline(time.Now().Add(waitLimit))
			msg := bytes.Repeat([]byte("m"), 1000)
			nc.Write(msg)
			got := make([]byte, len("hello\r\n")+len(msg))
			if _, err := io.ReadFull(nc, got); err != nil {
				t.Fatal(err)
			}
			open := scrape(t, url)
			if v := value(open, "tcpkit_connections_open"); v != 1 {
				t.Errorf("connections_open = %v with one client", v)
			}
			nc.(*net.TCPConn).CloseWrite()
			io.ReadAll(nc)
			nc.Close()

			// One denied client.
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
			if dc, err := d.Dial("tcp", e.addr()); err == nil {
				dc.SetDeadline(time.Now().Add(waitLimit))
				io.ReadAll(dc)
				dc.Close()
			}

			deadline := time.Now().Add(waitLimit)
			var after map[string]*dto.MetricFamily
			for {
				after = scrape(t, url)
				if value(after, "tcpkit_connections_closed_total", "cause", "clean") == 1 &&
					value(after, "tcpkit_connections_dropped_total", "reason", "denied") == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("counters did not move: closed clean %v, dropped denied %v",
						value(after, "tcpkit_connections_closed_total", "cause", "clean"),
						value(after, "tcpkit_connections_dropped_total", "reason", "denied"))
				}
				time.Sleep(10 * time.Millisecond)
			}
			checks := []struct {
				name   string
				labels []string
				min    float64
				max    float64
			}{
				{"tcpkit_connections_accepted_total", nil, 2, 2},
				{"tcpkit_connections_open", nil, 0, 0},
				{"tcpkit_received_bytes_total", nil, 1000, 1000},
				{"tcpkit_sent_bytes_total", nil, 1007, 1007},
				{"tcpkit_connections_closed_total", []string{"cause", "peer_reset"}, 0, 0},
				{"tcpkit_connections_dropped_total", []string{"reason", "rate"}, 0, 0},
				{"tcpkit_queued_bytes", nil, 0, 0},
				{"tcpkit_accept_errors_total", nil, 0, 0},
			}
			for _, c := range checks {
				if v := value(after, c.name, c.labels...); v < c.min || v > c.max {
					t.Errorf("%s%v = %v, want %v..%v", c.name, c.labels, v, c.min, c.max)
				}
			}
			loops := value(after, "tcpkit_loop_connections", "loop", "0")
			if engine == "epoll" && loops < 0 || engine == "goroutine" && loops >= 0 {
				t.Errorf("loop_connections{loop=0} = %v on the %s engine", loops, engine)
			}
			if value(after, "go_goroutines") <= 0 {
				t.Error("no Go runtime metrics")
			}
		})
	}
}
