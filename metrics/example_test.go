package metrics_test

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/metrics"
)

// Register a server's metrics with one call; promhttp.HandlerFor(reg, ...)
// then serves them.
func ExampleNewCollector() {
	srv := tcpkit.NewServer(func(c *tcpkit.Conn) { tcpkit.Pipe(c, c) })
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(srv, prometheus.Labels{"server": "echo"}))

	families, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range families[:3] {
		fmt.Println(f.GetName(), f.GetMetric()[0].GetLabel()[0].GetValue())
	}
	// Output:
	// tcpkit_accept_errors_total echo
	// tcpkit_connections_accepted_total echo
	// tcpkit_connections_closed_total clean
}
