// Package status serves what an operator looks at while a relay or a node
// runs, on the address given with --metrics: Prometheus metrics at
// /metrics, a status page at / and the same data as JSON at /api/status.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/p2prc/p2prc/tunnel"
)

// Source is what the status page and metrics show: a *tunnel.Relay or a
// *tunnel.Node.
type Source interface {
	Status() tunnel.Status
}

// Report is the JSON of /api/status and what the page shows: the Status of
// the relay or node, and when and by which p2prc it was taken.
type Report struct {
	tunnel.Status
	Version       string    `json:"version"`
	Now           time.Time `json:"now"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Sessions      int       `json:"sessions"`
}

// report snapshots src.
func report(src Source, version string) Report {
	st := src.Status()
	now := time.Now()
	r := Report{Status: st, Version: version, Now: now, Sessions: st.Sessions()}
	if !st.Started.IsZero() {
		r.UptimeSeconds = now.Sub(st.Started).Seconds()
	}
	if r.Nodes == nil {
		r.Nodes = []tunnel.NodeStatus{} // [] rather than null, for scripts
	}
	for i := range r.Nodes {
		if r.Nodes[i].Mappings == nil {
			r.Nodes[i].Mappings = []tunnel.MappingStatus{}
		}
	}
	return r
}

// Handler serves /metrics from m, and the status page and /api/status
// from src.
func Handler(m *Metrics, src Source, version string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{MaxRequestsInFlight: 4}))
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		b, err := json.MarshalIndent(report(src, version), "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(append(b, '\n'))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		servePage(w, report(src, version))
	})
	return mux
}

// Server is a running status server.
type Server struct {
	srv       *http.Server
	addr      net.Addr
	done      chan struct{}
	closeOnce sync.Once
}

// Start listens on addr and serves h there until Close.
func Start(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       time.Minute,
			MaxHeaderBytes:    16 << 10,
			// Broken clients are the server's business, not the operator's.
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		addr: ln.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("the status server stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops the server, giving requests in flight a moment to finish, and
// waits for it. It may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if s.srv.Shutdown(ctx) != nil {
			s.srv.Close()
		}
	})
	<-s.done
}
