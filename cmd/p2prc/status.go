package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"

	"github.com/p2prc/p2prc/cmd/p2prc/internal/status"
	"github.com/p2prc/p2prc/tunnel"
)

// metricsFlags adds --metrics: Prometheus metrics, a status page and its
// JSON, served by a relay or a node.
type metricsFlags struct {
	addr    string
	metrics *status.Metrics
}

func (f *metricsFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.addr, "metrics", "", "serve Prometheus /metrics, a status page at / and /api/status on this address, e.g. 127.0.0.1:9700 (default: off)")
}

// observer returns what the relay or node should report events to: nil
// without --metrics.
func (f *metricsFlags) observer() tunnel.Observer {
	if f.addr == "" {
		return nil
	}
	f.metrics = status.NewMetrics(buildInfo())
	return f.metrics
}

// serve starts serving src's status, if --metrics was given; the returned
// stop ends the server and waits for it.
func (f *metricsFlags) serve(src status.Source, log *slog.Logger) (stop func(), err error) {
	if f.metrics == nil {
		return func() {}, nil
	}
	f.metrics.Watch(src)
	srv, err := status.Start(f.addr, status.Handler(f.metrics, src, versionString()), log)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	log.Info("serving metrics and the status page", "url", "http://"+srv.Addr().String()+"/")
	return srv.Close, nil
}

// printMappings prints a node's mappings as it does when it comes up,
// "tcp 127.0.0.1:22 -> relay.example:31022", one a line; a node that is
// not connected, or without mappings, says so in a line starting with #.
func printMappings(w io.Writer, st tunnel.Status) {
	for _, nd := range st.Nodes {
		switch {
		case !nd.Connected && len(nd.Mappings) == 0:
			fmt.Fprintf(w, "# not connected to the relay %s yet\n", st.Relay)
		case !nd.Connected:
			fmt.Fprintf(w, "# not connected to the relay %s; the mappings it last granted:\n", st.Relay)
		case len(nd.Mappings) == 0:
			fmt.Fprintf(w, "# connected to the relay %s; no port granted yet\n", st.Relay)
		}
		for _, m := range nd.Mappings {
			printMapping(w, strings.ToLower(m.Type), m.Local, m.Public)
		}
	}
}

// printMapping is the one-glance line of a mapping.
func printMapping(w io.Writer, network, local, public string) {
	fmt.Fprintf(w, "%s %s -> %s\n", network, local, public)
}
