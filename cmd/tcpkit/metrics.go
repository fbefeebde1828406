package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tcpkit/tcpkit"
	"github.com/tcpkit/tcpkit/metrics"
)

// serveMetrics serves srv's metrics, and the Go runtime's and the
// process's, at /metrics on addr, and nothing else. It returns the bound
// address and a function that stops serving.
func serveMetrics(addr string, srv *tcpkit.Server, log *slog.Logger) (bound string, stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(srv, nil),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, failf("--metrics %s: %s", addr, cause(err))
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics: serving failed", "err", err.Error())
		}
	}()
	bound = ln.Addr().String()
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		log.Warn("metrics served on a non-loopback address: anyone who can reach it can read them", "addr", bound)
	}
	log.Info("metrics", "url", "http://"+bound+"/metrics")
	return bound, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		hs.Shutdown(ctx)
		<-done
	}, nil
}
